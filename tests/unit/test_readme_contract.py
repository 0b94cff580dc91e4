"""The README's schema tables are the ones the writers use."""

from pathlib import Path

import pytest

from forumstats.schemas import DATASET_COLUMNS, markdown_table

README = (Path(__file__).parents[2] / "README.md").read_text()


@pytest.mark.parametrize("dataset", sorted(DATASET_COLUMNS))
def test_readme_documents_each_schema_exactly(dataset):
    assert f"`{dataset}`\n\n{markdown_table(dataset)}\n" in README


def test_readme_shows_the_two_commands():
    assert "make run" in README and "make test" in README
