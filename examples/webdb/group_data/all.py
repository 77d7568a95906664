_sudo = True  # OrbStack machines log in as a non-root user with passwordless sudo
