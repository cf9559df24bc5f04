//! Ansible YAML inventories (filled in by its own change).
