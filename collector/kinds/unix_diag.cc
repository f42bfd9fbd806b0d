// sock_diag for AF_UNIX: filled in by the unix socket module.
