#!/usr/bin/env python3
# An Ansible dynamic inventory script that answers --list with _meta.
import json, sys
if sys.argv[1:] == ["--list"]:
    print(json.dumps({
        "_meta": {"hostvars": {
            "app1": {"ansible_host": "10.4.0.1", "level": "app1-host"},
            "app2": {"ansible_host": "10.4.0.2", "ansible_port": 2222},
        }},
        "all": {"vars": {"level": "all", "site": "ord"}},
        "app": {"hosts": ["app1", "app2"], "vars": {"level": "app"}, "children": ["canary"]},
        "canary": {"hosts": ["app1"], "vars": {"level": "canary"}},
        "legacy": ["old1", "old2"],
    }))
else:
    print("{}")
