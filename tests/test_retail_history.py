import io

import pandas as pd
import pytest

from offline.history import load_history
from offline.retail_history import HistoryError, clean_retail, load_retail, read_retail_csv

CSV = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,,United Kingdom
C536379,85123A,WHITE HEART,-1,2010-12-01 09:41:00,2.55,14527.0,United Kingdom
536380,22961,JAM JAR,-24,2010-12-01 09:41:00,1.45,14527.0,United Kingdom
536381,22139,FREE GIFT,1,2010-12-01 09:41:00,0.0,14527.0,United Kingdom
536382,POST,POSTAGE,1,2010-12-01 09:45:00,18.0,12583.0,France
536383,BANK CHARGES,Bank Charges,1,2010-12-01 09:45:00,15.0,12583.0,France
536384,84029e,"RED, WOOLLY HOTTIE",8,2010-12-01 09:50:00,3.39,12583.0,France
536385,22960,JAM MAKING SET,x,2010-12-01 09:50:00,4.25,12583.0,France
"""


def clean(text=CSV):
    path = io.StringIO(text)
    return clean_retail(pd.read_csv(path, dtype=str, keep_default_na=False, na_values={"CustomerID": [""]}))


def test_each_rule_removes_and_counts_its_rows():
    history, report = clean()
    assert report.rows_in == 10
    assert report.removed == {
        "unparseable quantity, price or date": 1,
        "missing CustomerID": 1,
        "cancellations (InvoiceNo starting with C)": 1,
        "Quantity <= 0": 1,
        "UnitPrice <= 0": 1,
        "non-product StockCode": 2,
    }
    assert report.rows_out == 3 == len(history)
    assert history["item_id"].tolist() == ["85123A", "71053", "84029e"]
    assert history["user_id"].tolist() == ["17850", "17850", "12583"]
    assert history["description"].iat[2] == "RED, WOOLLY HOTTIE"
    assert history["timestamp"].iat[0] == pd.Timestamp("2010-12-01 08:26:00")
    assert any(line.endswith("3 rows kept") for line in report.lines())


def test_missing_columns_and_unreadable_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("InvoiceNo,StockCode\n1,2\n")
    with pytest.raises(HistoryError, match="missing columns Description, Quantity"):
        read_retail_csv(bad)
    with pytest.raises(HistoryError, match="cannot read"):
        read_retail_csv(tmp_path / "absent.csv")


def test_history_falls_back_to_the_simulator_without_data(tmp_path):
    history = load_history(str(tmp_path), "auto", download=False)
    assert history.source.startswith("simulator (Online Retail is not at") and "--download" in history.source
    assert len(history.orders) > 1000 and history.report is None
    with pytest.raises(HistoryError, match="does not exist"):
        load_history(str(tmp_path), "retail", download=False)


@pytest.mark.retail
def test_real_data_matches_the_published_figures(retail_csv):
    history, report = load_retail(retail_csv)
    assert report.rows_in == 541_909
    assert report.removed["missing CustomerID"] == 135_080
    assert history["timestamp"].is_monotonic_increasing
    assert (history["quantity"] > 0).all() and (history["price"] > 0).all()
    assert history["item_id"].str.fullmatch(r"\d{5}[A-Za-z]*").all()
    train_users = history.loc[history["timestamp"] < "2011-11-09", "user_id"].nunique()
    assert train_users == 4063  # DESIGN.md's evaluation protocol count


def test_absurd_quantities_are_capped_not_dropped():
    from offline.retail_history import OUTLIER_RULE
    rows = "".join(f"5{n:05d},22961,JAM JAR,{q},2010-12-01 09:41:00,1.45,1452{n % 3}.0,UK\n"
                   for n, q in enumerate([12, 12, 24, 6, 80995]))
    history, report = clean("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n" + rows)
    assert len(history) == 5 and report.capped == {OUTLIER_RULE: 1}
    assert history["quantity"].max() == 600  # 50 x the median line of 12
    assert OUTLIER_RULE in report.lines()[-1]


def test_customer_table_encodes_price_band_and_country():
    from models.segments import customer_features
    from offline.customer_table import customer_feature_table
    from offline.simulator import simulate_history
    from offline.training import interactions
    history = simulate_history(n_users=50)
    history.loc[history["user_id"] == "sim00001", "country"] = "France"
    features = customer_features(interactions(history))
    table = customer_feature_table(history, features)
    assert "price_band" not in features  # the segments' own features are left as they were
    assert len(table) == 50 and set(table["price_band"]) == {0, 1, 2, 3, 4}
    assert table.loc["sim00001", "country_France"] == 1 and table["country_Simland"].sum() == 49
    assert {"recency_days", "frequency", "monetary", "basket_lines", "days_between_orders"} <= set(table.columns)


def test_a_customers_country_is_the_one_most_of_their_lines_name():
    from offline.customer_table import _most_common
    history = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b", "c"],
                            "country": ["Spain", "France", "Spain", "Peru", "Chile", None]})
    assert _most_common(history, "country").to_dict() == {"a": "Spain", "b": "Chile"}  # tie: sort order


def test_an_item_with_a_single_line_is_capped_against_the_shops_typical_line():
    rows = "".join(f"5{n:05d},2296{n % 2},JAR,{q},2010-12-01 09:41:00,1.45,14520.0,UK\n"
                   for n, q in enumerate([6, 6, 12, 6, 4, 6]))
    rows += "581483,23843,PAPER CRAFT LITTLE BIRDIE,80995,2011-12-09 09:15:00,2.08,16446.0,UK\n"
    history, report = clean("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n" + rows)
    assert history.loc[history["item_id"] == "23843", "quantity"].item() == 300  # 50 x the shop's median line of 6


def test_cancellations_come_off_the_lines_they_cancel_for_revenue_figures():
    from offline.retail_history import net_of_cancellations
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    rows = ("581483,23843,PAPER CRAFT,80995,2011-12-09 09:15:00,2.08,16446.0,UK\n"
            "C581484,23843,PAPER CRAFT,-80995,2011-12-09 09:27:00,2.08,16446.0,UK\n"
            "536365,85123A,WHITE HEART,6,2010-12-01 08:26:00,2.55,17850.0,UK\n"
            "536366,85123A,WHITE HEART,6,2010-12-02 08:26:00,2.55,17850.0,UK\n"
            "C536367,85123A,WHITE HEART,-8,2010-12-03 08:26:00,2.55,17850.0,UK\n"
            "C536368,71053,LANTERN,-1,2010-12-03 08:26:00,3.39,17850.0,UK\n")  # cancels nothing bought here
    history, report = clean(header + rows)
    assert len(history) == 3 and len(report.cancellations) == 3
    net, matched = net_of_cancellations(history, report.cancellations)
    assert matched == 2
    assert net[["item_id", "quantity"]].values.tolist() == [["85123A", 4]]  # 8 came off the latest lines first
