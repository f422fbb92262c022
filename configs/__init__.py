"""Training configs (YAML), installed as package data ``khabar.configs``: ``khabar serve
--ensure-model`` trains demo.yaml from the package, so an installed wheel can build it too."""
