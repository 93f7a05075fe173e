"""Write the dashboards bundle (superset/dashboards/) from the definitions in `dashboard_defs.py`.

The bundle is what Superset imports at start (see `superset/import_dashboards.py`); these two files
are its source: edit the definitions in `dashboard_defs.py`, run
`.venv/bin/python superset/build_dashboards.py`, review the YAML diff, commit both. UUIDs derive
from each object's key, so a rebuild updates objects in place on the next import instead of
duplicating them.

Every chart carries the query it runs (`query_context`): `GET /api/v1/chart/<id>/data/` and the
tests use it. It has the chart's columns, metrics, filters, order and limit, without the
visualisation's post-processing (the browser adds that when it draws the chart).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "dashboards"
sys.path.insert(0, str(HERE))

from dashboard_defs import DASHBOARDS, DATABASES, Chart, Dashboard, Database, Dataset  # noqa: E402

VERSION = "1.0.0"
# Export bundles carry a timestamp; a fixed one keeps rebuilds free of noise in the diff.
TIMESTAMP = "2026-01-01T00:00:00+00:00"
_NAMESPACE = uuid.UUID("5b1d7a5e-6f1e-4c55-9a8e-1c0d3f2a9b70")


def uid(kind: str, key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


# --- YAML documents ---------------------------------------------------------------------------


def database_doc(database: Database) -> dict[str, Any]:
    return {
        "database_name": database.name,
        # The password is masked as in any export; the import puts in the URI from .env.
        "sqlalchemy_uri": database.uri,
        "cache_timeout": database.cache_timeout,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_file_upload": False,
        "impersonate_user": False,
        "extra": database.extra,
        "uuid": uid("database", database.key),
        "version": VERSION,
    }


def dataset_doc(dataset: Dataset) -> dict[str, Any]:
    return {
        "table_name": dataset.table_name,
        "main_dttm_col": dataset.main_dttm_col,
        "description": dataset.description,
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": dataset.cache_timeout,
        "schema": dataset.schema,
        "sql": dataset.sql,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "always_filter_main_dttm": False,
        "uuid": uid("dataset", dataset.key),
        "metrics": [
            {
                "metric_name": m.name,
                "verbose_name": m.label,
                "metric_type": None,
                "expression": m.expression,
                "description": m.description,
                "d3format": m.d3format,
                "currency": None,
                "extra": {},
                "warning_text": None,
            }
            for m in dataset.metrics
        ],
        "columns": [
            {
                "column_name": c.name,
                "verbose_name": c.label,
                "is_dttm": c.is_dttm,
                "is_active": True,
                "type": c.type,
                "advanced_data_type": None,
                "groupby": True,
                "filterable": True,
                "expression": c.expression,
                "description": c.description,
                "python_date_format": None,
                "extra": {},
            }
            for c in dataset.columns
        ],
        "version": VERSION,
        "database_uuid": uid("database", dataset.database.key),
    }


def chart_doc(chart: Chart, dashboard: Dashboard) -> dict[str, Any]:
    params = {
        "datasource": f"__{chart.dataset.key}__table",  # rewritten to the real id at import
        "viz_type": chart.viz_type,
        "dashboards": [],
        **chart.params,
    }
    query_context = {
        "datasource": {"id": 0, "type": "table"},  # rewritten to the real id at import
        "force": False,
        "queries": [chart.query],
        "result_format": "json",
        "result_type": "full",
    }
    return {
        "slice_name": chart.title,
        "description": chart.description,
        "certified_by": None,
        "certification_details": None,
        "viz_type": chart.viz_type,
        "params": params,
        "query_context": json.dumps(query_context, indent=2),
        "cache_timeout": chart.cache_timeout,
        "uuid": uid("chart", f"{dashboard.key}/{chart.key}"),
        "version": VERSION,
        "dataset_uuid": uid("dataset", chart.dataset.key),
    }


@dataclass
class _Layout:
    """Superset's dashboard layout: a tree of ROOT > GRID > ROW > CHART/MARKDOWN components."""

    dashboard: Dashboard
    nodes: dict[str, Any] = field(default_factory=dict)

    def build(self) -> dict[str, Any]:
        self.nodes = {
            "DASHBOARD_VERSION_KEY": "v2",
            "ROOT_ID": {"children": ["GRID_ID"], "id": "ROOT_ID", "type": "ROOT"},
            "GRID_ID": {"children": [], "id": "GRID_ID", "parents": ["ROOT_ID"], "type": "GRID"},
            "HEADER_ID": {"id": "HEADER_ID", "meta": {"text": self.dashboard.title}, "type": "HEADER"},
        }
        if self.dashboard.intro:
            self._row(0, [("MARKDOWN", self.dashboard.intro)])
        for number, row in enumerate(self.dashboard.rows, start=1):
            self._row(number, [("CHART", chart) for chart in row])
        return self.nodes

    def _row(self, number: int, items: list[tuple[str, Any]]) -> None:
        row_id = f"ROW-{self.dashboard.key}-{number}"
        parents = ["ROOT_ID", "GRID_ID"]
        children = [self._item(kind, item, [*parents, row_id], f"{row_id}-{i}") for i, (kind, item) in enumerate(items)]
        self.nodes["GRID_ID"]["children"].append(row_id)
        self.nodes[row_id] = {
            "children": children,
            "id": row_id,
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
            "parents": parents,
            "type": "ROW",
        }

    def _item(self, kind: str, item: Any, parents: list[str], item_id: str) -> str:
        if kind == "MARKDOWN":
            node_id = f"MARKDOWN-{item_id}"
            meta = {"code": item, "height": 14, "width": 12}
        else:
            chart: Chart = item
            node_id = f"CHART-{self.dashboard.key}-{chart.key}"
            chart_uuid = uid("chart", f"{self.dashboard.key}/{chart.key}")
            meta = {
                "chartId": 0,
                "height": chart.height,
                "sliceName": chart.title,
                "uuid": chart_uuid,
                "width": chart.width,
            }
        self.nodes[node_id] = {"children": [], "id": node_id, "meta": meta, "parents": parents, "type": kind}
        return node_id


def dashboard_doc(dashboard: Dashboard) -> dict[str, Any]:
    return {
        "dashboard_title": dashboard.title,
        "description": None,
        "css": "",
        "slug": dashboard.slug,
        "certified_by": "",
        "certification_details": "",
        "published": True,
        "uuid": uid("dashboard", dashboard.key),
        "position": _Layout(dashboard).build(),
        "metadata": {
            "refresh_frequency": dashboard.refresh_seconds,
            "timed_refresh_immune_slices": [],
            "expanded_slices": {},
            "color_scheme": "supersetColors",
            "label_colors": {},
            "shared_label_colors": [],
            "cross_filters_enabled": False,
            "native_filter_configuration": [],
            "chart_configuration": {},
            "default_filters": "{}",
        },
        "version": VERSION,
    }


# --- writing ----------------------------------------------------------------------------------


def documents() -> dict[str, dict[str, Any]]:
    """Every file of the bundle, by path inside it."""
    docs: dict[str, dict[str, Any]] = {
        "metadata.yaml": {"version": VERSION, "type": "assets", "timestamp": TIMESTAMP},
    }
    for database in DATABASES:
        docs[f"databases/{slug(database.name)}.yaml"] = database_doc(database)
    for dashboard in DASHBOARDS:
        docs[f"dashboards/{dashboard.key}.yaml"] = dashboard_doc(dashboard)
        for chart in dashboard.charts():
            docs[f"charts/{dashboard.key}_{chart.key}.yaml"] = chart_doc(chart, dashboard)
            dataset = chart.dataset
            docs[f"datasets/{slug(dataset.database.name)}/{dataset.table_name}.yaml"] = dataset_doc(dataset)
    return docs


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (SQL, query contexts, markdown) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def write(target: Path = BUNDLE) -> None:
    shutil.rmtree(target, ignore_errors=True)
    for path, doc in documents().items():
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110))


if __name__ == "__main__":
    write()
    print(f"wrote {sum(1 for _ in BUNDLE.rglob('*.yaml'))} files under {BUNDLE}")
