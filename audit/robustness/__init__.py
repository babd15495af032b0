"""Robustness: adversarial attacks (``attacks``, ``foolbox_attacks``), robust accuracy curves
(``evaluate``), gradient-masking diagnostics (``diagnostics``), common corruptions
(``corruptions``) and the ``robustness`` check (``check``)."""
