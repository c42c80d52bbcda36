"""The live "what changed" page in Chromium, fed by the real path: a sync of the provider sandbox
(``services.ingestor ingest``) → ``raw.events`` → the normalizer process → the store → the API's
change stream → ``EventSource`` on the open page. Every change's delay, from the normalizer's
modification stamp (taken before its bulk write) to its row in the page's DOM, is at most 2 s."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from shared.mongo import EVENTS, get_database, make_client
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_api import api_env, api_topics, free_port, spawn, start_api, stop, tail
from tests.integration.test_web import ARTIFACTS, CHROMIUM_ARGS, chromium_path, shot
from tests.sandbox import running_sandbox, sandbox_env
from tests.stack import ROOT

MAX_DELAY_S = 2.0  # issue 16: "a change made in the sandbox appears on an open page within 2 s"
# Each row added to the list: its event, its modification time, when it reached the DOM.
OBSERVE = """() => {
  window.__arrivals = [];
  new MutationObserver((records) => {
    const at = performance.timeOrigin + performance.now();
    for (const r of records) for (const node of r.addedNodes) {
      if (node.nodeType !== 1) continue;
      const time = node.querySelector('time');
      window.__arrivals.push({id: node.dataset.canonicalId,
                              modified: time && time.getAttribute('datetime'), at});
    }
  }).observe(document.getElementById('changes'), {childList: true});
}"""


@dataclass
class Live:
    url: str
    browser: Browser
    base: dict[str, str]
    db: Any
    logs: list[Path]


@pytest.fixture(scope="module")
async def live(
    stack: Any, kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path_factory: Any
) -> AsyncIterator[Live]:
    executable = chromium_path()
    unique = os.urandom(5).hex()
    tmp = tmp_path_factory.mktemp("web-changes")
    topics = api_topics(f"live-{unique}")
    topics |= {
        "raw": f"raw.events.live-{unique}",
        "canonical": f"events.canonical.live-{unique}",
        "dlq": f"raw.events.dlq.live-{unique}",
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 2, 1) for n in topics.values()])
    finally:
        await admin.close()
    database = f"live_{unique}"
    logs = [tmp / "normalizer.log", tmp / "api.log", tmp / "sync.log"]
    with running_sandbox("--tm-per-second", "0", "--sg-per-second", "0", events=400) as sandbox:
        base = {
            **os.environ,
            **stack.env(),
            **sandbox_env(sandbox),
            "MARQUEE_ENV": "test",
            "ENABLE_AUTO_SYNC": "false",
            "MONGO_DATABASE": database,
            "S3_BUCKET": f"live-{unique}",
            "INGESTOR_RAW_TOPIC": topics["raw"],
        }
        normalizer = spawn(
            "services.normalizer",
            {
                **base,
                "NORMALIZER_APP_ID": f"normalizer-live-{unique}",
                "NORMALIZER_INPUT_TOPIC": topics["raw"],
                "NORMALIZER_CHANGES_TOPIC": topics["canonical"],
                "NORMALIZER_DLQ_TOPIC": topics["dlq"],
                "NORMALIZER_DATA_DIR": str(tmp / "faust"),
                "NORMALIZER_HTTP_PORT": "0",
                "NORMALIZER_BATCH_SIZE": "100",
            },
            logs[0],
        )
        env = {**api_env(stack, topics, database, free_port()), **base}
        env = {k: v for k, v in env.items() if not k.startswith("INGESTOR_")}
        client = make_client(mongo_settings)
        db = get_database(client, mongo_settings, database)
        try:
            async with start_api(env, logs[1]) as url, async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=executable, headless=True, args=CHROMIUM_ARGS
                )
                try:
                    yield Live(url, browser, base, db, logs)
                finally:
                    await browser.close()
        finally:
            stop(normalizer)
            await client.drop_database(database)
            await client.close()


async def signed_in(live: Live, name: str) -> tuple[BrowserContext, Page]:
    context = await live.browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto(f"{live.url}/web/login?next=/web/changes")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("user", exact=True).check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{live.url}/web/changes")
    return context, page


async def sync(live: Live) -> None:
    """A sandbox sync through the ingestor's CLI (raw records to the normalizer's topic)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with live.logs[2].open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.ingestor",
            "ingest",
            "--provider",
            "seatgeek",
            "--query",
            "concert",
            "--days",
            "30",
            "--start",
            today.isoformat().replace("+00:00", "Z"),
            env=live.base,
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
        assert await asyncio.wait_for(proc.wait(), 300) == 0, tail(live.logs[2])


async def test_a_sandbox_change_appears_on_the_open_page_within_2_s(live: Live) -> None:
    context, page = await signed_in(live, "lena")
    await expect(page.get_by_role("heading", name="What changed", level=1)).to_be_visible()
    await expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="What changed")
    ).to_be_visible()
    status = page.locator("#live-status")
    await expect(status).to_have_text("Live: new changes appear at the top.", timeout=10_000)
    await expect(page.get_by_text("No change yet")).to_be_visible()
    await expect(page.locator("#changes")).to_have_attribute("aria-live", "polite")
    await shot(page, "20-changes-empty")
    await page.evaluate(OBSERVE)

    await sync(live)
    # Every canonical event the normalizer wrote reaches the page (its latest version).
    deadline = time.monotonic() + 120
    while True:
        stored = {
            str(d["_id"]): d["updated_at"]
            async for d in live.db[EVENTS].find({}, {"updated_at": 1})
        }
        arrivals: list[dict[str, Any]] = await page.evaluate("window.__arrivals")
        seen = {a["id"] for a in arrivals}
        if stored and set(stored) <= seen:
            break
        assert time.monotonic() < deadline, (
            f"{len(set(stored) - seen)} of {len(stored)} changes missing on the page\n"
            + tail(live.logs[1])
        )
        await asyncio.sleep(1)
    delays = sorted(
        a["at"] / 1000 - datetime.fromisoformat(a["modified"].replace("Z", "+00:00")).timestamp()
        for a in arrivals
    )
    worst = delays[-1]
    print(
        f"\n{len(arrivals)} rows for {len(stored)} events; write → DOM: "
        f"median {delays[len(delays) // 2]:.3f} s, max {worst:.3f} s"
    )
    assert worst <= MAX_DELAY_S, f"slowest change reached the page after {worst:.2f} s"
    rows = page.locator("#changes > li")
    await expect(rows.first.locator(".op")).to_have_text(
        re.compile("^(created|updated|merged|cancelled)$")
    )
    await shot(page, "21-changes-live")
    docs = ROOT / "docs" / "screenshots"
    if docs.is_dir():
        shutil.copy(ARTIFACTS / "21-changes-live.png", docs / "web-changes-live.png")

    # The same page filtered: only the chosen provider's events, and every control labelled.
    await page.get_by_label("Provider", exact=True).select_option(label="Meetup")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"/web/changes\?source=meetup&"))
    await expect(page.get_by_text("No change yet matching these filters")).to_be_visible()
    await expect(status).to_have_text("Live: new changes appear at the top.", timeout=10_000)
    unlabelled = await page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
           .filter(el => !el.labels || el.labels.length === 0).map(el => el.name)"""
    )
    assert unlabelled == []
    await context.close()
