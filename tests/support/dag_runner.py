"""One DAG run with dag.test(), in a process of its own: `python -m tests.support.dag_runner DAG_ID CONF DAGS_FOLDER`.

tests.support.airflow.run_dag starts it with `airflow_environment(settings)` (Airflow reads its
configuration once per process). It loads the DAG from DAGS_FOLDER, turns retries off (a failing task
must fail the run now, not in five minutes), runs dag.test() with CONF (JSON) and prints the run's
state, task states and return values as JSON on one line after RESULT_MARKER. The DAG is paused
meanwhile: the stack's scheduler would otherwise take up the run's task instances too, and the loser
of that race fails ("TI was not in a state where it could be marked as running").

Airflow is imported only when this runs, never by importing the module: a process that imported
this module must not have configured Airflow by doing so.
"""

import json
import sys

RESULT_MARKER = "@@RESULT@@"


def main() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dag import DagModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def set_paused(dag_id, paused):
        with create_session() as session:
            model = session.get(DagModel, dag_id)
            was = model.is_paused if model else None
            if model:
                model.is_paused = paused
        return was

    dag_id, conf, folder = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    dag = DagBag(dag_folder=folder, safe_mode=False).dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
    was_paused = set_paused(dag_id, True)
    try:
        run = dag.test(run_conf=conf)
    finally:
        if was_paused is not None:
            set_paused(dag_id, was_paused)
    with create_session() as session:
        tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == run.run_id, XComModel.key == "return_value"
        )
        xcom = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    result = {"state": str(run.state), "run_id": run.run_id, "tasks": tasks, "xcom": xcom}
    print(RESULT_MARKER + json.dumps(result, default=str))


if __name__ == "__main__":
    main()
