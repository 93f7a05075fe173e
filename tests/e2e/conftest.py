# The pipeline fixture of the integration tests (consumer and connector running) serves here too.
from tests.support.fixtures import cdc_pipeline  # noqa: F401
