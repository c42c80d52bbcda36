"""The fault suite, CI-sized: each fault once on a small world, every invariant must hold."""

from __future__ import annotations

from pathlib import Path

from benchmarks.faults import FAULTS, SuiteOptions, run_suite, table


async def test_every_fault_once_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """A private Kafka, MongoDB-wire server, S3, sandbox and all five services (nothing shared
    is touched); kill -9 of each service and of the store, a broker restart, the store frozen
    and stopped for 20 s, a failing sandbox — after each the pipeline converges and the
    invariants hold."""
    options = SuiteOptions(
        runs=1,
        events=150,
        horizon_days=60,  # fewer windows per sync: shorter rounds
        imports_per_round=15,
        converge_timeout_s=240,
        workdir=tmp_path / "faults",
        # faust's default 60 s session timeout would stall the group that long after a
        # kill -9 of the normalizer; the production setting is left to the script's runs.
        extra_env={"BROKER_SESSION_TIMEOUT": "15"},
    )
    outcomes, totals = await run_suite(options)
    print(table(outcomes))
    assert [o.fault for o in outcomes] == list(FAULTS)
    failed = [f"{o.fault}: {'; '.join(o.notes)}" for o in outcomes if not o.ok]
    assert not failed, "\n".join(failed) + f"\nlogs: {totals['workdir']}"
    # The suite really did something: a catalogue, imports, deliveries, and restarts.
    assert totals["records"] > 50
    assert totals["local_events"] > 15
    assert totals["notifications"] >= totals["local_events"]
    restarted = {name for name, starts in totals["starts"].items() if starts >= 2}
    assert {"normalizer", "importer", "notifier", "api", "ingestor", "kafka", "mongo"} <= (
        restarted
    )
