"""The builder: what turns a capture into the bytes of its log, off the request path.

- :mod:`~readme_metrics.build.har`: capture → HAR 1.2 log object;
- :mod:`~readme_metrics.build.bodies`: bodies (codings, forms, multipart, JSON, markers);
- :mod:`~readme_metrics.build.redaction`: denylist, allowlist, default secret rules;
- :mod:`~readme_metrics.build.encode`: :class:`Builder`, the whole step (build, the
  ``mask`` hook, JSON, the API key scrub), which the delivery worker calls.

Nothing here is imported by the request path (the middlewares and ``capture``).
"""

from readme_metrics.build.encode import Builder, BuildError, dumps

__all__ = ["BuildError", "Builder", "dumps"]
