"""The prompt pages in a real browser (tests/ui/_browser.py): create a prompt in the
editor, add a second version, diff the two (the changed line marked as removed and
added), promote v2 to an environment; axe-core and a screenshot on every page.
"""

from __future__ import annotations

import uuid
from typing import Any

from _browser import Installation, axe, shot
from playwright.sync_api import expect

V1 = "You are a support assistant.\nAnswer the question: {{question}}\nBe brief.\n"
V2 = "You are a support assistant.\nAnswer the question politely: {{question}}\nBe brief.\n"


def test_create_a_prompt_add_a_version_diff_them_and_promote_v2(
        installation: Installation, page: Any) -> None:
    inst = installation
    name = f"support-answer-{uuid.uuid4().hex[:6]}"
    base = f"{inst.cp_url}/projects/{inst.project_id}/prompts"

    page.goto(base)
    expect(page.get_by_role("heading", name="Prompts", level=1)).to_be_visible()
    page.get_by_role("button", name="New prompt").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Tags (comma separated)").fill("support, e2e")
    body = page.get_by_role("textbox", name="Prompt body")
    body.fill(V1)
    expect(body).to_contain_text("Answer the question: {{question}}")
    axe(page, "new prompt form")
    shot(page, "prompts-new")
    page.get_by_role("button", name="Create prompt").click()

    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    versions = page.get_by_role("table", name="Versions")
    expect(versions.get_by_role("row")).to_have_count(2)
    environments = page.get_by_role("list", name="Environments")
    expect(environments.get_by_role("listitem", name="prod: no version")).to_be_visible()

    # A second version, written in the editor from v1.
    editor = page.get_by_role("textbox", name="New version body")
    expect(editor).to_contain_text("Answer the question: {{question}}")
    editor.fill(V2)
    expect(editor).to_contain_text("politely")
    page.get_by_label("Version note").fill("politer")
    page.get_by_role("button", name="Save as v2").click()
    expect(versions.get_by_role("row")).to_have_count(3)
    expect(versions.get_by_role("row", name="v2")).to_contain_text("politer")

    # The diff v1 -> v2: the changed line removed and added, the rest unchanged.
    expect(page.get_by_label("From", exact=True)).to_have_value("1")
    expect(page.get_by_label("To", exact=True)).to_have_value("2")
    diff = page.get_by_role("table", name="Prompt changes from v1 to v2")
    removed = diff.locator("tr.diff-removed")
    added = diff.locator("tr.diff-added")
    expect(removed).to_have_count(1)
    expect(added).to_have_count(1)
    expect(removed).to_contain_text("Removed: Answer the question: {{question}}")
    expect(added).to_contain_text("Added: Answer the question politely: {{question}}")
    expect(diff.locator("tr.diff-same")).to_have_count(2)
    expect(page.get_by_text("1 line added, 1 removed")).to_be_visible()
    axe(page, "prompt page with a diff")
    shot(page, "prompt-diff")

    # Promote v2 to staging, then v1 to prod.
    page.get_by_label("Version to promote").select_option("2")
    page.get_by_label("Environment", exact=True).select_option("staging")
    page.get_by_role("button", name="Promote").click()
    expect(page.get_by_text("v2 is now served in staging.")).to_be_visible()
    expect(environments.get_by_role("listitem", name="staging: v2")).to_be_visible()
    expect(versions.get_by_role("row", name="v2")).to_contain_text("staging")
    page.get_by_label("Version to promote").select_option("1")
    page.get_by_label("Environment", exact=True).select_option("prod")
    page.get_by_role("button", name="Promote").click()
    expect(environments.get_by_role("listitem", name="prod: v1")).to_be_visible()
    shot(page, "prompt-promoted")

    # The list shows the environments; the control plane serves v2 in staging.
    page.goto(base)
    row = page.get_by_role("table", name="Prompts").get_by_role("row", name=name)
    expect(row).to_contain_text("staging v2")
    expect(row).to_contain_text("prod v1")
    expect(row).to_contain_text("v2")
    axe(page, "prompts list")
    shot(page, "prompts-list")
    # What the control plane holds, read with the page's own session.
    listed = page.request.get(f"{inst.cp_url}/v1/projects/{inst.project_id}/prompts",
                              params={"name": name})
    assert listed.status == 200, listed.text()
    [template] = listed.json()
    assert template["environments"] == {"staging": 2, "prod": 1}
    assert template["versions"][1]["body"] == V2


def test_an_unknown_prompt_shows_an_error_not_a_blank_page(
        installation: Installation, page: Any) -> None:
    page.goto(f"{installation.cp_url}/projects/{installation.project_id}/prompts/"
              f"{uuid.uuid4()}")
    expect(page.get_by_role("alert")).to_contain_text("Could not open this prompt")
    axe(page, "unknown prompt")
