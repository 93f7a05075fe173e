"""What the tests share: clients of the running services, helpers of the pipeline tests, runners.

Test modules import from here, never from one another. Nothing here is collected as a test.
"""
