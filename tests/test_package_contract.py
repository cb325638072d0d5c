"""The package's public names: typed, documented, and each docstring names the chapter that introduces it."""

import importlib
import inspect
import pkgutil

import pytest

import multihead

MODULES = [importlib.import_module(f"multihead.{m.name}") for m in pkgutil.iter_modules(multihead.__path__)]
PUBLIC = [
    (module.__name__, name, obj)
    for module in MODULES
    for name, obj in vars(module).items()
    if not name.startswith("_")
    and (inspect.isfunction(obj) or inspect.isclass(obj))
    and obj.__module__ == module.__name__
]


def test_modules_found() -> None:
    assert {"heads", "masks", "counting", "attention", "module", "widgets", "exercises", "bench"} <= {
        m.__name__.split(".")[1] for m in MODULES
    }


@pytest.mark.parametrize(("module", "name", "obj"), PUBLIC, ids=[f"{m}.{n}" for m, n, _ in PUBLIC])
def test_public_name_is_documented_with_its_chapter(module: str, name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{module}.{name} has no docstring"
    assert "chapter" in doc.lower(), f"{module}.{name}: the docstring should name the chapter that introduces it"
    if inspect.isfunction(obj):
        hints = obj.__annotations__
        assert "return" in hints, f"{module}.{name} has no return type hint"


def test_init_reexports_only_existing_names() -> None:
    for name in multihead.__all__:
        assert hasattr(multihead, name), name


def test_the_package_does_not_import_upward() -> None:
    """Ground-floor modules import nothing of ours; only the top floor imports module/attention."""
    ground = {"heads", "masks", "counting", "data", "plotting"}
    top = {"training", "experiments", "widgets", "exercises", "bench", "roofline", "analysis", "bugs", "pretrained", "realheads"}
    for module in MODULES:
        short = module.__name__.split(".")[1]
        source = inspect.getsource(module)
        imported = {line.split()[1].lstrip(".") for line in source.splitlines() if line.startswith("from .")}
        if short == "heads":
            assert not imported, imported
        elif short in ground:
            assert imported <= ground, f"{short} imports {imported - ground}"
        if short not in top:
            assert not imported & top, f"{short} imports the top floor: {imported & top}"
