// STUB until the JSON reader lands.
use super::{Origin, Sources};
use crate::support::error::{Error, SourceFile};
pub(crate) fn read_file(_: &SourceFile, _: &mut Sources) -> Result<(), Error> {
    Err(Error::input("JSON stub", ""))
}
pub(crate) fn read_script(
    _: &SourceFile,
    _: &Origin,
    _: &mut Sources,
) -> Result<Vec<String>, Error> {
    Err(Error::input("JSON stub", ""))
}
pub(crate) fn read_host(_: &SourceFile, _: &str, _: &Origin, _: &mut Sources) -> Result<(), Error> {
    Err(Error::input("JSON stub", ""))
}
