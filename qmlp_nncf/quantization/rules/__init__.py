"""What the recipes are made of: the graph roles of a quantizer site (``roles``), quantizer specs (``specs``), rules
that choose a spec per site (``rule``), the families' rules (``family_rules``), the fused placement (``placement``),
range estimators (``calibration``) and NNCF ignored scopes checked against the graph (``ignored_scope``).

A leaf layer: nothing here imports the recipes, the algorithms or the entry points."""
