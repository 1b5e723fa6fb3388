import gzip
import math

import numpy as np
import pandas as pd
import pytest

from models.interactions import Interactions
from offline.evaluation import average_precisions, evaluate_lists, holdout_split, list_metrics
from offline.interactions_loader import load_interactions, load_items
from models.ranking_metrics import average_precision_at_k, ndcg_at_k, precision_at_k, recall_at_k
from offline.retail_history import HistoryError
from offline.schedule import parse_interval, run_periodically


def test_metrics_against_hand_computed_values():
    ranked, relevant = ["a", "x", "b", "y"], {"a", "b", "c"}
    assert precision_at_k(ranked, relevant, 4) == 0.5
    assert recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
    assert average_precision_at_k(ranked, relevant, 4) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision_at_k(ranked, {"a"}, 4) == 1.0
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx(dcg / idcg)
    assert average_precision_at_k(ranked, set(), 4) == ndcg_at_k(ranked, set(), 4) == 0.0
    # AP divides by min(|relevant|, k)
    assert average_precision_at_k(["a", "b"], {"a", "b", "c", "d"}, 2) == 1.0


def test_each_customers_average_precision_is_what_the_list_metrics_average():
    lists = np.array([[0, 7, 1, 8], [5, 6, -1, -1], [2, 3, 4, 9], [1, 0, 2, 3]])
    relevant = [{0, 1, 2}, set(), {9}, {0}]  # the second customer bought nothing held out: not counted
    aps = average_precisions(lists, relevant, k=4)
    assert aps == pytest.approx([(1 + 2 / 3) / 3, 1 / 4, 1 / 2])
    assert aps.mean() == pytest.approx(list_metrics(lists, relevant, k=4)["map"])


def test_protocol_views_on_a_tiny_history():
    t = pd.Timestamp("2024-01-01")
    rows = [("u1", "A", "o1", t), ("u1", "B", "o1", t), ("u2", "C", "o2", t),
            ("u1", "A", "o3", t + pd.Timedelta(days=40)), ("u1", "C", "o3", t + pd.Timedelta(days=40)),
            ("u1", "Z", "o3", t + pd.Timedelta(days=40)), ("u3", "A", "o4", t + pd.Timedelta(days=40))]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "order_id", "timestamp"]).assign(quantity=1, price=1.0)
    split = holdout_split(Interactions.from_frame(events), t + pd.Timedelta(days=30))
    assert list(split.test_users) == ["u1"]  # u3 is new, u2 did not come back
    assert [sorted(split.train.item_ids[list(r)]) for r in split.relevant] == [["A", "C"]]  # Z is unknown to train
    # ALL shows A then B; NEW (bought items left out) shows C.
    result = evaluate_lists(split, {"ALL": np.array([[0, 1]]), "NEW": np.array([[2, -1]])}, k=2)
    assert result["ALL"]["map"] == pytest.approx(0.5) and result["ALL"]["precision"] == 0.5
    # NEW: A and B were bought before; C is the only new relevant item and ranks first.
    assert result["NEW"]["map"] == 1.0 and result["NEW"]["users"] == 1


def test_generic_interactions_and_items_load_with_defaults(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp,quantity\nu1,A,2024-01-01 10:00,2\nu1,B,2024-01-01 10:00,1\n"
                    "u2,A,2024-01-02 09:00,3\n")
    frame = load_interactions(path)
    assert list(frame["item_id"]) == ["A", "B", "A"] and frame["price"].eq(0).all()
    assert frame.loc[0, "order_id"] == frame.loc[1, "order_id"] != frame.loc[2, "order_id"]
    frame.to_parquet(tmp_path / "events.parquet")
    assert len(load_interactions(tmp_path / "events.parquet")) == 3
    epoch = tmp_path / "epoch.csv"
    for zeros in ("", "000", "000000", "000000000"):  # seconds, milliseconds, microseconds, nanoseconds
        epoch.write_text(f"user_id,item_id,timestamp\nu1,A,1704200000{zeros}\nu1,B,1704200001{zeros}\n")
        assert load_interactions(epoch)["timestamp"].tolist() == [pd.Timestamp("2024-01-02 12:53:20"),
                                                                  pd.Timestamp("2024-01-02 12:53:21")]
    items = tmp_path / "items.csv"
    items.write_text("item_id,text,category,price\nA,red lamp,lights,3.5\nB,blue mug,kitchen,x\n")
    loaded = load_items(items)
    assert loaded["text"].tolist() == ["red lamp", "blue mug"] and np.isnan(loaded["price"].iat[1])


@pytest.mark.parametrize("content, message", [
    ("user,item\nu1,A\n", "missing columns user_id, item_id"),
    ("user_id,item_id,price\nu1,A,cheap\n", "1 rows whose price is not a number"),
    ("user_id,item_id,weight\nu1,A,-1\n", "negative weight"),
    ("user_id,item_id,timestamp\nu1,A,yesterday-ish\n", r"1 rows with an unparseable timestamp \(lines 2\)"),
    ("user_id,item_id,timestamp,quantity\nu1,A,2024-01-01,-4\n", "negative quantity"),
    ("user_id,item_id,timestamp\n,A,2024-01-01\n", "empty user_id"),
])
def test_bad_interaction_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(HistoryError, match=message):
        load_interactions(path)


@pytest.mark.parametrize("written, meant", [
    # Days first, as most of the world writes them: every date read so, not only those over the 12th.
    (["05/01/2024 10:00", "31/12/2024 09:30"], ["2024-01-05 10:00", "2024-12-31 09:30"]),
    (["01/05/2024", "12/31/2024"], ["2024-01-05", "2024-12-31"]),  # months first
    # Offsets that change with daylight saving within the file: all taken to UTC.
    (["2024-03-30T12:00:00+01:00", "2024-04-01T12:00:00+02:00"], ["2024-03-30 11:00", "2024-04-01 10:00"]),
    # Dates as digits, not seconds since 1970; one missing (an empty field makes the column float).
    (["20240105", "20241231", ""], ["2024-01-05", "2024-12-31", None]),
    (["20240105093000", "20241231235959"], ["2024-01-05 09:30", "2024-12-31 23:59:59"]),
    # Unix times of every size are still Unix times.
    (["1704447000", "1735689599"], ["2024-01-05 09:30", "2024-12-31 23:59:59"]),
    (["883612800000", "883699200000"], ["1998-01-01", "1998-01-02"]),  # milliseconds, 12 digits
    # Day numbers (days from the export's start, spreadsheet dates): days apart, not seconds.
    (["1", "711.5"], ["1970-01-02", "1971-12-13 12:00"]),
])
def test_timestamps_are_read_alike_in_every_row(tmp_path, written, meant):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"u{n},A,{time}\n" for n, time in enumerate(written)))
    if None in meant:
        with pytest.raises(HistoryError, match="1 rows with an unparseable timestamp"):
            load_interactions(path)
        path.write_text(path.read_text().replace("u2,A,\n", ""))
        meant = meant[:-1]
    frame = load_interactions(path).sort_values("user_id")
    assert frame["timestamp"].tolist() == [pd.Timestamp(time) for time in meant]


@pytest.mark.parametrize("name, delimiter", [("events.csv", ";"), ("events.tsv", "\t"), ("events.csv", "|"),
                                             ("events.csv.gz", ";")])
def test_exports_with_other_delimiters_and_header_cases_load_alike(tmp_path, name, delimiter):
    path = tmp_path / name
    lines = [" User_ID", "Item_ID", "Quantity"], ["007", "A", "2"], ["7", "B", "1"]
    text = "".join(delimiter.join(line) + "\n" for line in lines)
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    frame = load_interactions(path).sort_values("item_id")
    assert frame["user_id"].tolist() == ["007", "7"] and frame["quantity"].tolist() == [2, 1]


@pytest.mark.parametrize("encoding, delimiter", [("cp1252", ","), ("utf-16", "\t"), ("utf-8-sig", ";")])
def test_exports_in_spreadsheet_encodings_load_alike(tmp_path, encoding, delimiter):
    path = tmp_path / "events.csv"
    lines = ["user_id", "item_id", "description"], ["u1", "A", "Café crème 5€"], ["u2", "B", "plain"]
    path.write_bytes("".join(delimiter.join(line) + "\n" for line in lines).encode(encoding))
    frame = load_interactions(path).sort_values("user_id")
    assert frame["description"].tolist() == ["Café crème 5€", "plain"]


def test_decimal_commas_and_flags_are_read_as_numbers(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id;item_id;price;rating\nu1;A;2,55;4,5\nu1;B;;1\nu2;A;,5;3\n")
    frame = load_interactions(path).set_index(["user_id", "item_id"])
    assert frame["price"].to_dict() == {("u1", "A"): 2.55, ("u1", "B"): 0.0, ("u2", "A"): 0.5}
    assert frame["weight"].to_dict() == {("u1", "A"): 1.0, ("u1", "B"): 0.5, ("u2", "A"): 0.5 + 0.5 * 2 / 3.5}
    path.write_text("user_id,item_id,weight\nu1,A,True\nu1,B,false\nu2,A,\n")  # flags as weights
    assert load_interactions(path).set_index(["user_id", "item_id"])["weight"].to_dict() == {
        ("u1", "A"): 1.0, ("u1", "B"): 0.0, ("u2", "A"): 1.0}
    items = tmp_path / "items.csv"
    items.write_text("item_id;price\nA;3,10\nB;12\n")
    assert load_items(items)["price"].tolist() == [3.1, 12.0]
    # With a decimal point in the same column, a comma is no decimal mark: the line is reported.
    path.write_text("user_id;item_id;price\nu1;A;2,55\nu1;B;1.5\n")
    with pytest.raises(HistoryError, match="1 rows whose price is not a number \\(lines 2\\)"):
        load_interactions(path)


def test_periodic_training_intervals_and_failures_do_not_stop_the_schedule():
    import typer
    from rich.console import Console
    from streams.settings import Settings
    assert parse_interval("6h") == 21600 and parse_interval("30m") == 1800 and parse_interval("1.5d") == 129600
    with pytest.raises(typer.BadParameter):
        parse_interval("often")
    calls, waited = [], []

    def run():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broker away")
        return "v2"
    run_periodically(run, 60.0, Settings(), Console(quiet=True), wait=lambda s: waited.append(s) or False, rounds=3)
    assert len(calls) == 3 and waited == [60.0, 60.0]


def test_optional_columns_may_be_missing_or_empty_and_ratings_become_weights(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp,price,order_id,quantity,rating,description\n"
                    "u1,A,2024-01-01,,,,5,\nu1,B,2024-01-02,,,,1,\nu2,A,2024-01-01,,o9,,3,\n")
    frame = load_interactions(path).set_index(["user_id", "item_id"])
    assert frame["price"].eq(0).all() and frame["quantity"].eq(1).all()
    assert frame.loc[("u2", "A"), "order_id"] == "o9" and frame.loc[("u1", "A"), "order_id"].startswith("u1@")
    # The highest rating weighs 1, the lowest 0.5, the rest in between.
    assert frame["weight"].to_dict() == {("u1", "A"): 1.0, ("u2", "A"): 0.75, ("u1", "B"): 0.5}
    assert (frame["description"] == "").all()


def test_a_history_without_timestamps_has_one_order_per_customer(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\nu1,A\nu1,B\nu2,A\n")
    frame = load_interactions(path)
    assert frame["timestamp"].nunique() == 1 and frame.groupby("user_id")["order_id"].nunique().eq(1).all()
