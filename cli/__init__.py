"""The `mammo-tf` command line (installed as the package `mammo_tf_cli`): parse, call, print."""
