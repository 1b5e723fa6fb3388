"""The worker's agents: user events and product records through the pipeline, online summaries
into the windowed table."""

from __future__ import annotations

import faust

from streams.agent_failures import exit_on_failure
from streams.event_pipeline import EventPipeline
from streams.online_summaries import InvalidSummary, add_counts, decode_summary, summary_counts
from streams.outbox import Outbox
from streams.settings import Settings
from streams.topology import Topology


def register_agents(app: faust.App, settings: Settings, topology: Topology, pipeline: EventPipeline,
                    outbox: Outbox) -> None:
    size, within = settings.worker_batch_size, settings.worker_batch_window_seconds

    @app.agent(topology.user_events, name="user-events")
    @exit_on_failure("the user-events agent")
    async def process_user_events(stream):
        async for batch in stream.take_events(size, within):
            await pipeline.handle_user_events([event.message for event in batch])

    @app.agent(topology.products, name="products")
    @exit_on_failure("the products agent")
    async def process_products(stream):
        async for batch in stream.take_events(size, within):
            await pipeline.handle_products([event.message for event in batch])

    @app.agent(topology.summaries, name="online-metrics")
    @exit_on_failure("the online-metrics agent")
    async def aggregate_online_metrics(stream):
        # Summaries are few (a handful per batch), so one at a time: the window needs the current event.
        async for event in stream.events():
            try:
                if event.key is None:
                    raise InvalidSummary("an online summary needs its scope as the key")
                scope = event.key.decode("utf-8", "replace")
                counts = summary_counts(decode_summary(event.value))
            except Exception as exc:  # a bad record is dead-lettered, never the end of the agent
                await outbox.dead_letter(event.message, str(exc) or type(exc).__name__)
                pipeline.metrics.events({f"dead_letter:{settings.topic_online_metrics}": 1})
                continue
            topology.online_window[scope].apply(add_counts, counts)
