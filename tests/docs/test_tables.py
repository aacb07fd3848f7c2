"""Every measured table in docs/ equals what its builder makes from the committed data."""

from __future__ import annotations

import pytest

from tests.docs.tables import builder, load_builders, markdown, pages, rebuild, wrapped_tables

BUILDERS = load_builders()
TABLES = [(page, name, body) for page in pages() for name, body in wrapped_tables(page.read_text())]


@pytest.mark.parametrize(("page", "name", "body"), TABLES,
                         ids=[f"{page.name}:{name}" for page, name, _ in TABLES])
def test_each_wrapped_table_is_rebuilt_from_its_data(page, name, body):
    assert name in BUILDERS, f"{page.name}: no builder for table {name!r}"
    assert BUILDERS[name]().strip() == body, f"{page.name}: table {name!r} differs from its data"


def test_every_builder_is_used_by_some_page():
    used = {name for _, name, _ in TABLES}
    assert not set(BUILDERS) - used, f"builders no page uses: {sorted(set(BUILDERS) - used)}"


def test_a_hand_edited_number_is_caught():
    """The mutant: one digit of a wrapped table changed by hand must make the check fail."""
    local = {}

    def build():
        return markdown(["n", "x"], [["1", "0.25"]])

    local["toy"] = build
    page = "intro\n<!-- table: toy -->\n| n | x |\n|---|---|\n| 1 | 0.26 |\n<!-- end table -->\nafter\n"
    (name, body), = wrapped_tables(page)
    assert name == "toy" and body != build().strip()
    fixed = rebuild(page, local)
    assert "0.25" in fixed and "0.26" not in fixed and fixed.startswith("intro\n") and fixed.endswith("after\n")


def test_two_builders_for_one_name_are_refused():
    @builder("tests-only-unique-name")
    def first():
        return ""

    with pytest.raises(RuntimeError, match="two builders"):
        @builder("tests-only-unique-name")
        def second():
            return ""
    from tests.docs.tables import BUILDERS as registry

    del registry["tests-only-unique-name"]
