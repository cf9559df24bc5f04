//! Ansible INI inventories (filled in by its own change).
