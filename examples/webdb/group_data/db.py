pg_version = 15  # debian:bookworm's
db_name = "app"
db_password = "app-secret"
