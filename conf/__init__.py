# Installed as the package `cin_style.conf` (see pyproject.toml), so that Hydra finds the
# configs through `pkg://cin_style.conf` from a wheel as well as from a checkout.
