"""Prefect's block standard test suite, plus the house rules for blocks, over every block in blocks/.

The blocks are discovered, not listed: a new ``blocks/<system>.py`` is tested as soon as
it exists, and a module that defines no block (or fails to import) fails here.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
import typing
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

BLOCKS_DIR = Path(__file__).resolve().parents[2] / "blocks"
#: Field names that hold credentials and must therefore be SecretStr.
SECRET_FIELD = re.compile(r"password|secret|token", re.IGNORECASE)
#: Field names that switch certificate or host key verification.
VERIFY_FIELD = re.compile(r"^verify_")


def block_modules() -> list[str]:
    return sorted(f"blocks.{p.stem}" for p in BLOCKS_DIR.glob("*.py") if p.stem != "__init__")


def blocks_in(module_name: str) -> list[type[Block]]:
    """Block classes defined (not merely imported) in ``module_name``."""
    module = importlib.import_module(module_name)
    return [cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if Block.is_block_class(cls) and cls.__module__ == module_name]


BLOCK_CLASSES: list[type[Block]] = [cls for name in block_modules() for cls in blocks_in(name)]


def annotation_types(annotation: object) -> set[object]:
    """``SecretStr | None`` -> {SecretStr, NoneType}."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set(typing.get_args(annotation))
    return {annotation}


@pytest.mark.parametrize("module_name", block_modules())
def test_every_module_in_blocks_defines_a_block(module_name: str) -> None:
    assert blocks_in(module_name), f"{module_name} defines no Prefect block"


def test_discovery_finds_the_blocks_of_every_system() -> None:
    names = {cls.__name__ for cls in BLOCK_CLASSES}
    assert {"VCenterCredentials", "DnsServerCredentials", "ServiceDeskCredentials"} <= names
    assert len(BLOCK_CLASSES) == len(names), "two blocks share a class name"
    slugs = [cls.get_block_type_slug() for cls in BLOCK_CLASSES]
    assert len(set(slugs)) == len(slugs), f"block type slugs collide: {slugs}"


class TestEveryBlock(BlockStandardTestSuite):
    """Upstream's suite (description, documentation URL, field descriptions, code example) per block."""

    @pytest.fixture(params=BLOCK_CLASSES, ids=lambda cls: cls.__name__)
    def block(self, request: pytest.FixtureRequest) -> type[Block]:
        return request.param  # type: ignore[no-any-return]

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        """Upstream downloads the logo, and unit tests have no network.

        No block ships a logo (the UI then shows its default one); whoever adds one must
        replace this check with a local one.
        """
        assert block._logo_url is None

    # -- house rules ----------------------------------------------------------------------------

    def test_follows_the_naming_rule(self, block: type[Block]) -> None:
        assert block.__name__.endswith("Credentials")
        assert block.get_block_type_name().endswith("Credentials")

    def test_credentials_are_secret_strings(self, block: type[Block]) -> None:
        secret_fields = [name for name in block.model_fields if SECRET_FIELD.search(name)]
        assert secret_fields, f"{block.__name__} holds no secret: is it a credentials block?"
        for name in secret_fields:
            kinds = annotation_types(block.model_fields[name].annotation)
            assert SecretStr in kinds and kinds <= {SecretStr, type(None)}, (
                f"{block.__name__}.{name} must be SecretStr, is {block.model_fields[name].annotation}")

    def test_verification_is_on_by_default(self, block: type[Block]) -> None:
        for name, field in block.model_fields.items():
            if VERIFY_FIELD.match(name):
                assert field.default is True, f"{block.__name__}.{name} must default to True"

    def test_hands_out_a_client(self, block: type[Block]) -> None:
        get_client = getattr(block, "get_client", None)
        assert callable(get_client), f"{block.__name__} has no get_client()"
        assert inspect.signature(get_client).return_annotation is not inspect.Signature.empty

    def test_knows_nothing_of_the_lab(self, block: type[Block]) -> None:
        """The lab publishes a site profile of plain field values; a block has no lab constructor."""
        lab_members = [name for name in vars(block) if "lab" in name.lower()]
        assert not lab_members, f"{block.__name__} has lab-specific members: {lab_members}"
