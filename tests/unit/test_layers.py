"""The package's layout is a rule, not a habit: imports point down the data flow, and nothing in the
product imports the developer tooling (instashop.devstack), so an install without it still works."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "instashop"
DAGS = PACKAGE.parents[1] / "dags"

# Which parts of the package each part may import: a stage depends on the stages a change has
# already passed through, ops (supervision) and the CLI on the stages they operate, the tooling on
# anything. settings is the foundation; kafka_auth knows the topics its ACLs grant.
MAY_IMPORT = {
    "settings": set(),
    "capture": {"settings"},
    "kafka_auth": {"settings", "capture"},
    "live": {"settings", "kafka_auth", "capture"},
    "warehouse": {"settings", "live"},
    "ingest": {"settings", "kafka_auth", "capture", "warehouse"},
    "ops": {"settings", "kafka_auth", "capture", "ingest", "warehouse", "live"},
    "cli": {"settings", "kafka_auth", "capture", "ingest", "warehouse", "live", "ops"},
    "devstack": {"settings", "kafka_auth", "capture", "ingest", "warehouse", "live", "ops", "cli"},
}


def _part(module: str) -> str:
    return module.split(".")[1]


def _instashop_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("instashop."):
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "instashop":
            names.update(f"instashop.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("instashop."))
    return names


def test_every_part_of_the_package_is_in_the_rule():
    parts = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts - {"__init__"} == set(MAY_IMPORT)


def test_imports_point_down_the_data_flow():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _part("instashop." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for module in _instashop_imports(path):
            target = _part(module)
            if target != source and target not in MAY_IMPORT[source]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports {module} ({source} -> {target})")
    assert not wrong, "\n".join(wrong)


def test_the_product_imports_without_the_developer_tooling():
    """Every product module and every DAG, imported with instashop.devstack made unimportable."""
    modules = sorted(
        "instashop." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
        if "devstack" not in p.relative_to(PACKAGE).parts
    )
    program = f"""
import importlib, runpy, sys
sys.modules["instashop.devstack"] = None  # any import of it now raises ImportError
for name in {modules!r}:
    importlib.import_module(name)
for dag in {sorted(str(p) for p in DAGS.glob("*.py"))!r}:
    runpy.run_path(dag)
assert not [m for m in sys.modules if m.startswith("instashop.devstack.")]
print("imported", len({modules!r}), "modules")
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported" in result.stdout
