"""``audit.toml``: reading and validating it (:mod:`audit.config.parse`), writing it
(:mod:`audit.config.write`) and its generated reference (:mod:`audit.config.docs`)."""

from audit.config.parse import AuditConfig, load_config, parse_config, resolve_config
from audit.config.write import config_toml, toml_value

__all__ = ["AuditConfig", "config_toml", "load_config", "parse_config", "resolve_config",
           "toml_value"]
