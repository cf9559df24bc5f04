//! Ansible INI inventories (filled in by its own change).
// STUB until the INI reader lands.
pub(crate) fn read(
    _: &crate::support::error::SourceFile,
    _: &mut super::Sources,
) -> Result<(), crate::support::error::Error> {
    Err(crate::support::error::Error::input("INI stub", ""))
}
