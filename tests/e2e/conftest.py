# The pipeline fixtures of the integration tests (consumer and connector running) serve here too.
from tests.integration.conftest import cdc_pipeline  # noqa: F401
