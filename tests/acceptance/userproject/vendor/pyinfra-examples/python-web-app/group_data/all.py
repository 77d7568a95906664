_sudo = True
