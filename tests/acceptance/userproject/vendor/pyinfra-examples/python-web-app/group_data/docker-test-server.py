_sudo = False
