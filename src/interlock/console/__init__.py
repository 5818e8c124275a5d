"""The operator's web console at ``/console`` (ADR 0020): server-rendered
pages over the admin API's own functions, behind a login with the admin key."""
