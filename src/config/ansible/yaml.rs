//! Ansible YAML inventories (filled in by its own change).
// STUB until the YAML reader lands.
pub(crate) fn read(
    _: &crate::support::error::SourceFile,
    _: &mut super::Sources,
) -> Result<(), crate::support::error::Error> {
    Err(crate::support::error::Error::input("YAML stub", ""))
}
pub(crate) fn read_vars(
    _: &crate::support::error::SourceFile,
) -> Result<Vec<(String, super::Var)>, crate::support::error::Error> {
    Err(crate::support::error::Error::input("YAML stub", ""))
}
