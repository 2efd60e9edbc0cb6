//! `vmseal vars`: a variable store with an org's keys enrolled ([`vmseal::sign::keys`]).

use std::path::PathBuf;

use clap::Args;

use super::Failure;
use super::keys::keys_failure;

#[derive(Args, Debug)]
pub(crate) struct VarsArgs {
    /// The keys directory (vmseal keys new): PK.crt, KEK.crt, db.crt, owner.guid.
    #[arg(long)]
    keys: PathBuf,
    /// The store to write.
    #[arg(long)]
    out: PathBuf,
    /// The OVMF store to enroll into (its other variables are kept).
    #[arg(long, value_name = "FILE", default_value = vmseal::sign::image::DEFAULT_VARS_TEMPLATE)]
    vars_template: PathBuf,
    /// Secure Boot template (as Hyper-V's): org-only; org+microsoft-uefi-ca (also trusts
    /// Microsoft's KEK and every Microsoft db CA: Windows, and the third-party UEFI CA that
    /// signs shim and option ROMs); org+microsoft-windows (Microsoft's KEK and the Windows CA).
    #[arg(long, value_enum, default_value = "org-only")]
    template: TemplateArg,
    /// Same as --template org+microsoft-uefi-ca.
    #[arg(long, conflicts_with = "template")]
    microsoft: bool,
    /// The store Microsoft's certificates and dbx come from.
    #[arg(long, alias = "microsoft-from", value_name = "FILE", default_value = vmseal::sign::image::DEFAULT_MICROSOFT_VARS)]
    microsoft_vars: PathBuf,
}

/// A Secure Boot template.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TemplateArg {
    #[value(name = "org-only")]
    Org,
    #[value(name = "org+microsoft-uefi-ca")]
    MicrosoftUefiCa,
    #[value(name = "org+microsoft-windows")]
    MicrosoftWindows,
}

pub(crate) fn run(a: VarsArgs) -> Result<(), Failure> {
    use signing::varstore::Template;
    let template = match (a.microsoft, a.template) {
        (true, _) | (_, TemplateArg::MicrosoftUefiCa) => Template::OrgMicrosoftUefiCa,
        (_, TemplateArg::MicrosoftWindows) => Template::OrgMicrosoftWindows,
        (_, TemplateArg::Org) => Template::OrgOnly,
    };
    let opts = vmseal::sign::keys::VarsOptions {
        keys: a.keys,
        out: a.out,
        template: Some(a.vars_template),
        sb_template: template,
        microsoft_from: template.needs_microsoft().then_some(a.microsoft_vars),
    };
    vmseal::sign::keys::vars(&opts).map_err(keys_failure)?;
    println!("{}", opts.out.display());
    Ok(())
}
