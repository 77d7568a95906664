_sudo = True  # the machine's default user is not root
app_path = "/opt/app"
greeting = "from group_data"  # --data greeting=... (data=) takes precedence
