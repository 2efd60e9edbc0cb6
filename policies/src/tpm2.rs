//! TPM 2.0 commands and response parsers for what vmseal reads from a TPM: which PCR banks are
//! allocated (`TPM2_GetCapability(TPM_CAP_PCRS)`) and the PCR values (`TPM2_PCR_Read`).
//!
//! Byte layouts: TCG *TPM 2.0 Library* Part 1 (command/response structure), Part 2
//! (`TPML_PCR_SELECTION`, `TPML_DIGEST`), Part 3 (GetCapability, PCR_Read); the recipes tested
//! against swtpm and QEMU's TIS are `shared/reference/tpm-tis-and-commands.md` §B.1–B.4. All
//! integers on the wire are big-endian.
//!
//! The transport (TIS FIFO in the stub, a socket or a fake in tests) is behind [`Transport`];
//! [`read_banks`] and [`read_pcrs`] are the whole protocol logic: bank discovery, PCR_Read in
//! chunks of at most 8 digests, retry on `TPM_RC_RETRY`/`TESTING`/`YIELDED`, and a coherent
//! set (the `pcrUpdateCounter` of every chunk of every bank must be the same, else everything
//! is read again).
//!
//! No allocation and no hashing: the stub runs this after ExitBootServices, where it has no
//! allocator, and on the UEFI target `policies` has no hash crates. Bad responses give a
//! [`Malformed`] naming the field, never a panic.
//!
//! For the attestation service (`images/attest`) it also builds `TPM2_CreatePrimary` of an
//! ECC P-256 restricted signing key, `TPM2_Quote` and `TPM2_FlushContext` (§B.6, §B.7, §B.9)
//! and parses their answers ([`parse_create_primary`], [`parse_quote`]).
//!
//! For the in-appliance agent (`images/agent`) it also builds the default ECC EK's
//! `TPM2_CreatePrimary`, a policy session satisfied by `PolicySecret(TPM_RH_ENDORSEMENT)` and
//! `TPM2_ActivateCredential` (credential activation, TPM 2.0 Part 1 §24).
//!
//! What it does not do: HMAC or salted sessions, extends, key persistence.

use core::fmt;

use crate::record::{Token, write_dec, write_hex_0x};
use crate::tcg::HashAlg;

/// Size of a command or response header: tag u16, size u32, code u32.
pub const HEADER_SIZE: usize = 10;
/// Number of PCRs of a PC Client TPM; [`PcrSet`] covers PCR 0–23.
pub const NUM_PCRS: u32 = 24;
/// Largest digest kept (SHA-512).
pub const MAX_DIGEST_SIZE: usize = 64;
/// Most banks kept from `TPM_CAP_PCRS`: the five algorithms EDK2 knows (SHA1, SHA256, SHA384,
/// SHA512, SM3_256), as [`crate::eventlog::MAX_DIGESTS`].
pub const MAX_BANKS: usize = crate::eventlog::MAX_DIGESTS as usize;
/// A response buffer of this size holds every response read here (EDK2's `MaxResponseSize`).
pub const MAX_RESPONSE: usize = 4096;
/// How often a command answered with a retryable code ([`ResponseCode::is_retry`]) is resent.
pub const MAX_RETRIES: u32 = 8;
/// How often the whole PCR set is read again when `pcrUpdateCounter` changed in between.
pub const MAX_REREADS: u32 = 3;

/// `TPM_ST` (UINT16): a command or response tag.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tag(pub u16);

impl Tag {
    /// `TPM_ST_NO_SESSIONS`.
    pub const NO_SESSIONS: Self = Self(0x8001);
    /// `TPM_ST_SESSIONS`.
    pub const SESSIONS: Self = Self(0x8002);
}

/// `TPM_CC` (UINT32): a command code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommandCode(pub u32);

impl CommandCode {
    /// `TPM_CC_GetCapability`.
    pub const GET_CAPABILITY: Self = Self(0x17A);
    /// `TPM_CC_PCR_Read`.
    pub const PCR_READ: Self = Self(0x17E);
    /// `TPM2_CreatePrimary`.
    pub const CREATE_PRIMARY: Self = Self(0x131);
    /// `TPM2_Quote`.
    pub const QUOTE: Self = Self(0x158);
    /// `TPM2_FlushContext`.
    pub const FLUSH_CONTEXT: Self = Self(0x165);
    /// `TPM_CC_ActivateCredential`.
    pub const ACTIVATE_CREDENTIAL: Self = Self(0x147);
    /// `TPM_CC_StartAuthSession`.
    pub const START_AUTH_SESSION: Self = Self(0x176);
    /// `TPM_CC_PolicySecret`.
    pub const POLICY_SECRET: Self = Self(0x151);
}

/// `TPM_RC` (UINT32): a response code; an unknown value stays representable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ResponseCode(pub u32);

impl ResponseCode {
    /// `TPM_RC_SUCCESS`.
    pub const SUCCESS: Self = Self(0);
    /// `TPM_RC_INITIALIZE`: TPM2_Startup was already done.
    pub const INITIALIZE: Self = Self(0x100);
    /// `TPM_RC_YIELDED`: resend.
    pub const YIELDED: Self = Self(0x908);
    /// `TPM_RC_TESTING`: self-test running; resend later.
    pub const TESTING: Self = Self(0x90A);
    /// `TPM_RC_RETRY`: resend the same bytes.
    pub const RETRY: Self = Self(0x922);

    /// Whether the command should be sent again unchanged (§B.1; Linux `tpm_transmit`).
    pub const fn is_retry(self) -> bool {
        matches!(self, Self::YIELDED | Self::TESTING | Self::RETRY)
    }
}

/// `TPM_CAP_PCRS`: the capability listing the PCR banks and their allocation.
pub const CAP_PCRS: u32 = 5;

/// A set of PCRs 0–23 (bit *i* = PCR *i*), the `pcrSelect` bitmap of a `TPMS_PCR_SELECTION`
/// (byte *k* bit *b* = PCR 8k+b).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct PcrSet(pub u32);

impl PcrSet {
    /// PCR 0–23.
    pub const ALL: Self = Self((1 << NUM_PCRS) - 1);
    /// No PCR.
    pub const EMPTY: Self = Self(0);

    /// Whether PCR `i` is in the set.
    pub const fn contains(self, i: u32) -> bool {
        i < 32 && self.0 & (1 << i) != 0
    }

    /// Number of PCRs in the set.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The PCRs of `self` that are not in `other`.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The PCR indices, ascending.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..32).filter(move |i| self.contains(*i))
    }
}

/// What is wrong with a response.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Malformed {
    /// The response ends inside the named field.
    Truncated(&'static str),
    /// The header's size field is not the number of bytes received.
    Size {
        /// The header's `responseSize`.
        header: u32,
        /// Bytes received.
        received: usize,
    },
    /// The response tag is not `TPM_ST_NO_SESSIONS` (the only tag the commands here use).
    Tag(u16),
    /// GetCapability answered another capability.
    Capability(u32),
    /// GetCapability set `moreData`: the bank list is incomplete.
    MoreData,
    /// More banks than [`MAX_BANKS`], or more than one in a PCR_Read answer.
    BankCount(u32),
    /// A `sizeofSelect` over 4 (more than 32 PCRs).
    SelectSize(u8),
    /// PCR_Read answered another bank than the one asked for.
    Bank(u16),
    /// PCR_Read returned PCRs that were not asked for, or none of the ones asked for.
    Selection(u32),
    /// The number of digests is not the number of PCRs in `pcrSelectionOut`.
    DigestCount(u32),
    /// A digest's size is not the bank's digest size (or over [`MAX_DIGEST_SIZE`]).
    DigestSize(u16),
    /// Bytes follow the last field.
    Trailing(usize),
    /// A sessions response whose `parameterSize` is more than the bytes after it.
    ParameterSize(u32),
    /// A `TPMT_SIGNATURE` of an algorithm not parsed here (only ECDSA, RSASSA, RSAPSS).
    SignatureAlg(u16),
}

impl Token for Malformed {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        let (word, n) = match *self {
            Self::Truncated(what) => {
                w.write_str("truncated-")?;
                return w.write_str(what);
            }
            Self::Size { header, received } => {
                w.write_str("size-")?;
                write_dec(w, header.into())?;
                w.write_str("-received-")?;
                return write_dec(w, received as u64);
            }
            Self::Tag(t) => return hex_word(w, "tag-", t),
            Self::Capability(c) => ("capability-", u64::from(c)),
            Self::MoreData => return w.write_str("more-data"),
            Self::BankCount(n) => ("bank-count-", u64::from(n)),
            Self::SelectSize(n) => ("sizeof-select-", u64::from(n)),
            Self::Bank(a) => return hex_word(w, "bank-", a),
            Self::Selection(s) => {
                w.write_str("selection-")?;
                return write_hex_0x(w, s.into(), 1);
            }
            Self::DigestCount(n) => ("digest-count-", u64::from(n)),
            Self::DigestSize(n) => ("digest-size-", u64::from(n)),
            Self::Trailing(n) => ("trailing-", n as u64),
            Self::ParameterSize(n) => ("parameter-size-", u64::from(n)),
            Self::SignatureAlg(a) => return hex_word(w, "signature-alg-", a),
        };
        w.write_str(word)?;
        write_dec(w, n)
    }
}

/// `word` then `{:#06x}` of `v`.
fn hex_word<W: fmt::Write + ?Sized>(w: &mut W, word: &str, v: u16) -> fmt::Result {
    w.write_str(word)?;
    write_hex_0x(w, v.into(), 4)
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_token(f)
    }
}

/// Why reading from the TPM failed. `E` is the transport's error.
///
/// `Display` writes one whitespace-free token (e.g. `rc-0x101-cc-0x17e`), so it can be the
/// value of a record field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error<E> {
    /// The transport failed.
    Transport(E),
    /// The TPM answered `command` with a non-success code.
    Response {
        /// The command sent.
        command: CommandCode,
        /// Its response code.
        rc: ResponseCode,
    },
    /// The response to `command` is malformed.
    Malformed {
        /// The command sent.
        command: CommandCode,
        /// What is wrong.
        what: Malformed,
    },
    /// `pcrUpdateCounter` changed in every one of [`MAX_REREADS`] attempts: a PCR kept being
    /// extended while we read.
    Unstable,
}

impl<E> Error<E> {
    /// The one token of every variant; `transport` writes the transport's error.
    fn write_with<W: fmt::Write + ?Sized>(
        &self,
        w: &mut W,
        transport: impl FnOnce(&E, &mut W) -> fmt::Result,
    ) -> fmt::Result {
        match self {
            Self::Transport(e) => transport(e, w),
            Self::Response { command, rc } => {
                w.write_str("rc-")?;
                write_hex_0x(w, rc.0.into(), 1)?;
                w.write_str("-cc-")?;
                write_hex_0x(w, command.0.into(), 1)
            }
            Self::Malformed { command, what } => {
                w.write_str("cc-")?;
                write_hex_0x(w, command.0.into(), 1)?;
                w.write_str("-")?;
                what.write_token(w)
            }
            Self::Unstable => w.write_str("pcr-update-counter-unstable"),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_with(f, |e, f| e.fmt(f))
    }
}

/// The same text as `Display`, without `core::fmt` (for the stub's record).
impl<E: Token> Token for Error<E> {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        self.write_with(w, |e, w| e.write_token(w))
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for Error<E> {}

/// A byte pipe to the TPM: one command in, one response out.
pub trait Transport {
    /// The transport's error.
    type Error;

    /// Send `cmd` and receive the response into `resp`; returns the response length.
    fn transact(&mut self, cmd: &[u8], resp: &mut [u8]) -> Result<usize, Self::Error>;

    /// Called before resending a command answered with a retryable code (`attempt` counts from
    /// 1). Linux waits 20 ms, doubling; the default does not wait.
    fn backoff(&mut self, attempt: u32) {
        let _ = attempt;
    }
}

/// A big-endian cursor (the TPM wire format).
struct Be<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Be<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed::Truncated(what))?;
        let s = self.buf.get(self.pos..end).ok_or(Malformed::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Malformed> {
        self.take(N, what)?.try_into().map_err(|_| Malformed::Truncated(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        self.array::<1>(what).map(|[b]| b)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        self.array(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn end(&self) -> Result<(), Malformed> {
        match self.buf.len().saturating_sub(self.pos) {
            0 => Ok(()),
            n => Err(Malformed::Trailing(n)),
        }
    }

    /// One `TPMS_PCR_SELECTION`: `hash u16 | sizeofSelect u8 | pcrSelect[sizeofSelect]`.
    fn selection(&mut self) -> Result<(HashAlg, PcrSet), Malformed> {
        let alg = HashAlg(self.u16("hash")?);
        let n = self.u8("sizeofSelect")?;
        if n > 4 {
            return Err(Malformed::SelectSize(n));
        }
        let mut bits = [0u8; 4];
        for (dst, src) in bits.iter_mut().zip(self.take(usize::from(n), "pcrSelect")?) {
            *dst = *src;
        }
        Ok((alg, PcrSet(u32::from_le_bytes(bits))))
    }
}

/// `TPM2_GetCapability(TPM_CAP_PCRS, property 0, propertyCount 1)` (§B.3, 22 bytes).
pub const fn get_capability_pcrs() -> [u8; 22] {
    let [t0, t1] = Tag::NO_SESSIONS.0.to_be_bytes();
    let [c0, c1, c2, c3] = CommandCode::GET_CAPABILITY.0.to_be_bytes();
    let [p0, p1, p2, p3] = CAP_PCRS.to_be_bytes();
    [
        t0, t1, 0, 0, 0, 22, c0, c1, c2, c3, // header, size 22
        p0, p1, p2, p3, // capability
        0, 0, 0, 0, // property
        0, 0, 0, 1, // propertyCount
    ]
}

/// `TPM2_PCR_Read` of the PCRs in `select` (0–23) of bank `alg` (§B.4, 20 bytes): one
/// `TPML_PCR_SELECTION` with `sizeofSelect` 3.
pub const fn pcr_read(alg: HashAlg, select: PcrSet) -> [u8; 20] {
    let [t0, t1] = Tag::NO_SESSIONS.0.to_be_bytes();
    let [c0, c1, c2, c3] = CommandCode::PCR_READ.0.to_be_bytes();
    let [a0, a1] = alg.0.to_be_bytes();
    let [s0, s1, s2, _] = (select.0 & PcrSet::ALL.0).to_le_bytes();
    [
        t0, t1, 0, 0, 0, 20, c0, c1, c2, c3, // header, size 20
        0, 0, 0, 1, // TPML_PCR_SELECTION.count
        a0, a1, 3, s0, s1, s2, // hash, sizeofSelect 3 (24 PCRs), pcrSelect
    ]
}

/// `TPM2_CreatePrimary` of an ECC P-256 restricted signing key (ECDSA/SHA-256) in the
/// endorsement hierarchy, empty auth (§B.6, 65 bytes, the reference's tested bytes). The
/// same template under the same seed gives the same key at every boot.
pub const fn create_primary_ecc_ak() -> [u8; 65] {
    [
        0x80, 0x02, 0, 0, 0, 0x41, 0, 0, 0x01, 0x31, // header, CreatePrimary
        0x40, 0, 0, 0x0b, // primaryHandle = TPM_RH_ENDORSEMENT
        0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0, // password session, empty
        0, 4, 0, 0, 0, 0, // inSensitive: empty userAuth and data
        0, 0x18, // inPublic: TPMT_PUBLIC of 24 bytes
        0, 0x23, 0, 0x0b, 0, 0x05, 0, 0x72, // ECC, nameAlg SHA-256, attributes
        0, 0, // authPolicy
        0, 0x10, 0, 0x18, 0, 0x0b, 0, 0x03, 0,
        0x10, // sym NULL, ECDSA/SHA-256, P-256, kdf NULL
        0, 0, 0, 0, // unique: empty x, y
        0, 0, // outsideInfo
        0, 0, 0, 0, // creationPCR: none
    ]
}

/// The parts of a `TPM2_CreatePrimary` response a quoting service needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Primary<'a> {
    /// The transient handle of the key.
    pub handle: u32,
    /// `outPublic`'s `TPMT_PUBLIC` (the bytes inside the `TPM2B_PUBLIC`).
    pub public: &'a [u8],
}

/// Parse what follows the header of a successful `TPM2_CreatePrimary` response (§B.6):
/// `objectHandle | parameterSize | outPublic | creationData | creationHash | creationTicket
/// {tag, hierarchy, digest} | name | response sessions`. `parameterSize` must delimit exactly
/// those parameters (the response sessions after them are not examined); `outPublic` must not
/// be empty.
pub fn parse_create_primary(params: &[u8]) -> Result<Primary<'_>, Malformed> {
    let mut r = Be { buf: params, pos: 0 };
    let handle = r.u32("objectHandle")?;
    let mut p = r.parameters()?;
    let public = p.tpm2b("outPublic")?;
    if public.is_empty() {
        return Err(Malformed::Truncated("outPublic"));
    }
    p.tpm2b("creationData")?;
    p.tpm2b("creationHash")?;
    p.u16("creationTicket.tag")?;
    p.u32("creationTicket.hierarchy")?;
    p.tpm2b("creationTicket.digest")?;
    p.tpm2b("name")?;
    p.end()?;
    Ok(Primary { handle, public })
}

impl<'a> Be<'a> {
    /// A `TPM2B_*`: size u16, then that many bytes.
    fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// `parameterSize` of a sessions response, and a cursor over the parameters it delimits.
    fn parameters(&mut self) -> Result<Be<'a>, Malformed> {
        let size = self.u32("parameterSize")?;
        let buf = usize::try_from(size)
            .ok()
            .and_then(|n| self.take(n, "parameters").ok())
            .ok_or(Malformed::ParameterSize(size))?;
        Ok(Be { buf, pos: 0 })
    }
}

/// The first 20 bytes of the AK's `TPMT_PUBLIC` (§B.6): everything before `unique`.
pub const AK_TEMPLATE_PREFIX: [u8; 20] =
    [0, 0x23, 0, 0x0b, 0, 0x05, 0, 0x72, 0, 0, 0, 0x10, 0, 0x18, 0, 0x0b, 0, 0x03, 0, 0x10];

/// Largest `TPM2_Quote` command [`quote`] builds.
pub const QUOTE_MAX: usize = 41 + 64;

/// `TPM2_Quote` with the key `handle` over the SHA-256 PCRs in `select` with `nonce` as
/// qualifyingData (§B.7; inScheme NULL = the key's ECDSA/SHA-256). Writes into `out`, returns
/// the length; `None` for a nonce over 64 bytes.
pub fn quote(
    handle: u32,
    nonce: &[u8],
    select: PcrSet,
    out: &mut [u8; QUOTE_MAX],
) -> Option<usize> {
    let n = u8::try_from(nonce.len()).ok().filter(|n| *n <= 64)?;
    let len = 41 + usize::from(n);
    let mut w = 0usize;
    let mut put = |bytes: &[u8]| {
        for b in bytes {
            if let Some(slot) = out.get_mut(w) {
                *slot = *b;
            }
            w += 1;
        }
    };
    put(&Tag::SESSIONS.0.to_be_bytes());
    put(&(len as u32).to_be_bytes());
    put(&CommandCode::QUOTE.0.to_be_bytes());
    put(&handle.to_be_bytes());
    put(&[0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0]);
    put(&[0, n]);
    put(nonce);
    put(&[0, 0x10]);
    let [s0, s1, s2, _] = (select.0 & PcrSet::ALL.0).to_le_bytes();
    put(&[0, 0, 0, 1, 0, 0x0b, 3, s0, s1, s2]);
    Some(len)
}

/// The parts of a `TPM2_Quote` response.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Quote<'a> {
    /// The `TPMS_ATTEST` (inside the `TPM2B_ATTEST`).
    pub attest: &'a [u8],
    /// The `TPMT_SIGNATURE` (sigAlg, hash, and the ECDSA r and s).
    pub signature: &'a [u8],
}

/// `TPM_ALG_ECDSA`.
pub const ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_RSASSA`.
pub const ALG_RSASSA: u16 = 0x0014;
/// `TPM_ALG_RSAPSS`.
pub const ALG_RSAPSS: u16 = 0x0016;

/// Parse what follows the header of a successful `TPM2_Quote` response (§B.7):
/// `parameterSize | quoted TPM2B_ATTEST | signature TPMT_SIGNATURE | response sessions`. The
/// signature must be ECDSA (`hash | r | s`) or RSASSA/RSAPSS (`hash | sig`) and end the
/// parameters; `quoted` must not be empty.
pub fn parse_quote(params: &[u8]) -> Result<Quote<'_>, Malformed> {
    let mut r = Be { buf: params, pos: 0 };
    let mut p = r.parameters()?;
    let attest = p.tpm2b("quoted")?;
    if attest.is_empty() {
        return Err(Malformed::Truncated("quoted"));
    }
    let start = p.pos;
    match p.u16("sigAlg")? {
        ALG_ECDSA => {
            p.u16("signature.hash")?;
            p.tpm2b("signatureR")?;
            p.tpm2b("signatureS")?;
        }
        ALG_RSASSA | ALG_RSAPSS => {
            p.u16("signature.hash")?;
            p.tpm2b("signature")?;
        }
        alg => return Err(Malformed::SignatureAlg(alg)),
    }
    let signature = p.buf.get(start..p.pos).ok_or(Malformed::Truncated("signature"))?;
    p.end()?;
    Ok(Quote { attest, signature })
}

/// `TPM2_CreatePrimary` of the default ECC endorsement key (TCG EK Credential Profile 2.x,
/// template L-2, what `tpm2_createek -G ecc` creates): P-256, nameAlg SHA-256, attributes
/// fixedTPM fixedParent sensitiveDataOrigin adminWithPolicy restricted decrypt (0x000300b2),
/// authPolicy PolicySecret(TPM_RH_ENDORSEMENT), AES-128-CFB, unique x and y 32 zero bytes
/// each. 163 bytes; the response parses with [`parse_create_primary`].
pub const fn create_primary_ecc_ek() -> [u8; 163] {
    [
        0x80, 0x02, 0, 0, 0, 163, 0, 0, 0x01, 0x31, // header, CreatePrimary
        0x40, 0, 0, 0x0b, // primaryHandle = TPM_RH_ENDORSEMENT
        0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0, // password session, empty
        0, 4, 0, 0, 0, 0, // inSensitive: empty userAuth and data
        0, 122, // inPublic: TPMT_PUBLIC of 122 bytes
        0, 0x23, 0, 0x0b, 0, 0x03, 0, 0xb2, // ECC, nameAlg SHA-256, attributes
        0, 0x20, 0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46,
        0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b,
        0x33, 0x14, 0x69, 0xaa, // authPolicy: PolicySecret(TPM_RH_ENDORSEMENT)
        0, 0x06, 0, 0x80, 0, 0x43, // symmetric AES-128-CFB
        0, 0x10, 0, 0x03, 0, 0x10, // scheme NULL, curve P-256, kdf NULL
        0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, // unique.x: 32 zero bytes
        0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, // unique.y: 32 zero bytes
        0, 0, // outsideInfo
        0, 0, 0, 0, // creationPCR: none
    ]
}

/// `TPM2_StartAuthSession` of an unbound, unsalted policy session with SHA-256 (Part 3
/// §11.1): what `tpm2_startauthsession --policy-session` starts. `nonce_caller` is 16 bytes
/// the caller chose. 43 bytes; the response parses with [`parse_start_auth_session`].
pub const fn start_policy_session(nonce_caller: &[u8; 16]) -> [u8; 43] {
    let [n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, n12, n13, n14, n15] = *nonce_caller;
    [
        0x80, 0x01, 0, 0, 0, 43, 0, 0, 0x01, 0x76, // header, StartAuthSession
        0x40, 0, 0, 0x07, // tpmKey = TPM_RH_NULL (no salt)
        0x40, 0, 0, 0x07, // bind = TPM_RH_NULL
        0, 16, n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, n12, n13, n14,
        n15, // nonceCaller
        0, 0,    // encryptedSalt: empty
        0x01, // sessionType TPM_SE_POLICY
        0, 0x10, // symmetric NULL
        0, 0x0b, // authHash SHA-256
    ]
}

/// The session handle of a `TPM2_StartAuthSession` response (`sessionHandle | nonceTPM`).
pub fn parse_start_auth_session(params: &[u8]) -> Result<u32, Malformed> {
    let mut r = Be { buf: params, pos: 0 };
    let handle = r.u32("sessionHandle")?;
    r.tpm2b("nonceTPM")?;
    r.end()?;
    Ok(handle)
}

/// `TPM2_PolicySecret(TPM_RH_ENDORSEMENT, session)` with the empty endorsement password
/// (Part 3 §23.4): satisfies the EK's authPolicy in `session`. 41 bytes; nothing to parse in
/// its response but the header.
pub const fn policy_secret_endorsement(session: u32) -> [u8; 41] {
    let [s0, s1, s2, s3] = session.to_be_bytes();
    [
        0x80, 0x02, 0, 0, 0, 41, 0, 0, 0x01, 0x51, // header, PolicySecret
        0x40, 0, 0, 0x0b, // authHandle = TPM_RH_ENDORSEMENT
        s0, s1, s2, s3, // policySession
        0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0, // password session for the hierarchy
        0, 0, // nonceTPM: empty
        0, 0, // cpHashA: empty
        0, 0, // policyRef: empty
        0, 0, 0, 0, // expiration 0
    ]
}

/// `TPM2_ActivateCredential(ak, ek, id_object, encrypted_secret)` (Part 3 §12.5): the AK
/// authorised by the empty password, the EK by `session` (a policy session that has passed
/// [`policy_secret_endorsement`]; it is flushed by the command). `id_object` and
/// `encrypted_secret` are the `TPM2B`s with their sizes. Written into `out`; `None` if it
/// does not fit. The response parses with [`parse_activate_credential`].
pub fn activate_credential(
    ak: u32,
    ek: u32,
    session: u32,
    id_object: &[u8],
    encrypted_secret: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let len = 40usize.checked_add(id_object.len())?.checked_add(encrypted_secret.len())?;
    let len32 = u32::try_from(len).ok()?;
    let out = out.get_mut(..len)?;
    let mut w = 0usize;
    let mut put = |bytes: &[u8]| {
        for b in bytes {
            if let Some(slot) = out.get_mut(w) {
                *slot = *b;
            }
            w += 1;
        }
    };
    put(&Tag::SESSIONS.0.to_be_bytes());
    put(&len32.to_be_bytes());
    put(&CommandCode::ACTIVATE_CREDENTIAL.0.to_be_bytes());
    put(&ak.to_be_bytes());
    put(&ek.to_be_bytes());
    put(&[0, 0, 0, 18]);
    put(&[0x40, 0, 0, 9, 0, 0, 0, 0, 0]); // the AK: empty password
    put(&session.to_be_bytes());
    put(&[0, 0, 0, 0, 0]); // the EK: the policy session, no nonce, no HMAC
    put(id_object);
    put(encrypted_secret);
    Some(len)
}

/// The `certInfo` (the credential) of a `TPM2_ActivateCredential` response.
pub fn parse_activate_credential(params: &[u8]) -> Result<&[u8], Malformed> {
    let mut r = Be { buf: params, pos: 0 };
    let mut p = r.parameters()?;
    let cert = p.tpm2b("certInfo")?;
    p.end()?;
    Ok(cert)
}

/// `TPM2_FlushContext(handle)` (§B.9, 14 bytes).
pub const fn flush_context(handle: u32) -> [u8; 14] {
    let [h0, h1, h2, h3] = handle.to_be_bytes();
    [0x80, 0x01, 0, 0, 0, 0x0e, 0, 0, 0x01, 0x65, h0, h1, h2, h3]
}

/// Check a response header: its size must be the bytes received and its tag
/// `TPM_ST_NO_SESSIONS` when it succeeded. Returns the response code and the bytes after the
/// header. (A failing command returns only the 10-byte header, with tag 0x8001 even for a
/// sessions command, §B.1.)
pub fn parse_header(resp: &[u8]) -> Result<(ResponseCode, &[u8]), Malformed> {
    let mut r = Be { buf: resp, pos: 0 };
    let tag = r.u16("tag")?;
    let size = r.u32("responseSize")?;
    let rc = ResponseCode(r.u32("responseCode")?);
    if usize::try_from(size).ok() != Some(resp.len()) {
        return Err(Malformed::Size { header: size, received: resp.len() });
    }
    if tag != Tag::NO_SESSIONS.0 && tag != Tag::SESSIONS.0 {
        return Err(Malformed::Tag(tag));
    }
    Ok((rc, r.take(resp.len() - HEADER_SIZE, "parameters")?))
}

/// The PCR banks of a TPM: `(algorithm, allocated PCRs)` in the TPM's order. A bank with an
/// empty set exists but is not allocated (§B.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Banks {
    banks: [(HashAlg, PcrSet); MAX_BANKS],
    len: usize,
}

impl Banks {
    /// Every bank the TPM listed, allocated or not.
    pub fn all(&self) -> impl Iterator<Item = (HashAlg, PcrSet)> + '_ {
        self.banks.iter().take(self.len).copied()
    }

    /// The allocated banks (a non-empty PCR set).
    pub fn active(&self) -> impl Iterator<Item = (HashAlg, PcrSet)> + '_ {
        self.all().filter(|(_, s)| !s.is_empty())
    }
}

/// Parse the parameters (after the header) of a successful `GetCapability(TPM_CAP_PCRS)`:
/// `moreData u8 | capability u32 | TPML_PCR_SELECTION`.
pub fn parse_pcr_banks(params: &[u8]) -> Result<Banks, Malformed> {
    let mut r = Be { buf: params, pos: 0 };
    let more = r.u8("moreData")?;
    let cap = r.u32("capability")?;
    if cap != CAP_PCRS {
        return Err(Malformed::Capability(cap));
    }
    let count = r.u32("count")?;
    if count as usize > MAX_BANKS {
        return Err(Malformed::BankCount(count));
    }
    let mut out = Banks { banks: [(HashAlg(0), PcrSet::EMPTY); MAX_BANKS], len: 0 };
    for slot in out.banks.iter_mut().take(count as usize) {
        *slot = r.selection()?;
    }
    out.len = count as usize;
    r.end()?;
    if more != 0 {
        return Err(Malformed::MoreData);
    }
    Ok(out)
}

/// A parsed `TPM2_PCR_Read` response.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PcrRead<'a> {
    /// `pcrUpdateCounter`.
    pub update_counter: u32,
    /// The bank of `pcrSelectionOut` (`None` when it lists no bank: nothing was read).
    pub alg: Option<HashAlg>,
    /// The PCRs returned.
    pub selected: PcrSet,
    /// The size of each digest.
    pub digest_size: usize,
    /// The `TPML_DIGEST` entries after the count: `selected.len()` × (size u16, digest).
    digests: &'a [u8],
}

impl<'a> PcrRead<'a> {
    /// `(PCR index, value)` in ascending PCR order (the TPM returns them so, §B.4).
    pub fn values(&self) -> impl Iterator<Item = (u32, &'a [u8])> + '_ {
        let step = self.digest_size + 2;
        self.selected
            .iter()
            .zip(self.digests.chunks_exact(step).map(move |c| c.get(2..).unwrap_or(&[])))
    }
}

/// Parse the parameters of a successful `TPM2_PCR_Read`: `pcrUpdateCounter u32 |
/// pcrSelectionOut TPML_PCR_SELECTION (0 or 1 bank) | pcrValues TPML_DIGEST`. Every digest
/// must have the same size: the bank's size when vmseal knows the algorithm, at most
/// [`MAX_DIGEST_SIZE`] otherwise.
pub fn parse_pcr_read(params: &[u8]) -> Result<PcrRead<'_>, Malformed> {
    let mut r = Be { buf: params, pos: 0 };
    let update_counter = r.u32("pcrUpdateCounter")?;
    let banks = r.u32("pcrSelectionOut.count")?;
    let (alg, selected) = match banks {
        0 => (None, PcrSet::EMPTY),
        1 => {
            let (a, s) = r.selection()?;
            (Some(a), s)
        }
        n => return Err(Malformed::BankCount(n)),
    };
    let count = r.u32("pcrValues.count")?;
    if count != selected.len() {
        return Err(Malformed::DigestCount(count));
    }
    let start = r.pos;
    let mut digest_size = alg.and_then(HashAlg::digest_size);
    for _ in 0..count {
        let size = r.u16("digest size")?;
        let want = *digest_size.get_or_insert(usize::from(size));
        if usize::from(size) != want || want > MAX_DIGEST_SIZE || want == 0 {
            return Err(Malformed::DigestSize(size));
        }
        r.take(want, "digest")?;
    }
    let digests = params.get(start..r.pos).ok_or(Malformed::Truncated("digest"))?;
    r.end()?;
    Ok(PcrRead { update_counter, alg, selected, digest_size: digest_size.unwrap_or(0), digests })
}

/// Send `cmd` and check the response: retry on a retryable code ([`MAX_RETRIES`] times), turn
/// any other non-success code into [`Error::Response`]. Returns the parameters.
pub fn execute<'r, T: Transport>(
    t: &mut T,
    command: CommandCode,
    cmd: &[u8],
    resp: &'r mut [u8],
) -> Result<&'r [u8], Error<T::Error>> {
    let mut attempt = 0;
    let n = loop {
        let n = t.transact(cmd, resp).map_err(Error::Transport)?;
        let got = resp.get(..n).ok_or(Error::Malformed {
            command,
            what: Malformed::Size { header: 0, received: n },
        })?;
        let (rc, _) = parse_header(got).map_err(|what| Error::Malformed { command, what })?;
        if rc.is_retry() && attempt < MAX_RETRIES {
            attempt += 1;
            t.backoff(attempt);
            continue;
        }
        if rc != ResponseCode::SUCCESS {
            return Err(Error::Response { command, rc });
        }
        break n;
    };
    let got = resp.get(..n).unwrap_or(&[]);
    Ok(got.get(HEADER_SIZE..).unwrap_or(&[]))
}

/// Ask the TPM which banks it has (`GetCapability(TPM_CAP_PCRS)`).
pub fn read_banks<T: Transport>(t: &mut T) -> Result<Banks, Error<T::Error>> {
    let command = CommandCode::GET_CAPABILITY;
    let mut resp = [0u8; MAX_RESPONSE];
    let params = execute(t, command, &get_capability_pcrs(), &mut resp)?;
    parse_pcr_banks(params).map_err(|what| Error::Malformed { command, what })
}

/// The PCR values of one bank.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BankValues {
    /// The bank.
    pub alg: HashAlg,
    /// The PCRs read (the bank's allocated PCRs among 0–23).
    pub read: PcrSet,
    /// Digest size of the bank.
    pub digest_size: usize,
    values: [[u8; MAX_DIGEST_SIZE]; NUM_PCRS as usize],
}

impl BankValues {
    /// The value of PCR `pcr`, if it was read.
    pub fn get(&self, pcr: u32) -> Option<&[u8]> {
        if !self.read.contains(pcr) {
            return None;
        }
        self.values.get(pcr as usize)?.get(..self.digest_size)
    }

    /// `(PCR index, value)` of every PCR read, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        self.read.iter().filter_map(|i| Some((i, self.get(i)?)))
    }
}

/// A coherent set of PCR values of every allocated bank (same `pcrUpdateCounter` throughout).
/// About 7.7 KiB, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PcrValues {
    /// `pcrUpdateCounter` of every chunk.
    pub update_counter: u32,
    banks: [BankValues; MAX_BANKS],
    len: usize,
}

impl PcrValues {
    const EMPTY_BANK: BankValues = BankValues {
        alg: HashAlg(0),
        read: PcrSet::EMPTY,
        digest_size: 0,
        values: [[0; MAX_DIGEST_SIZE]; NUM_PCRS as usize],
    };

    /// The banks, in the TPM's order.
    pub fn banks(&self) -> impl Iterator<Item = &BankValues> + '_ {
        self.banks.iter().take(self.len)
    }

    /// The values of bank `alg`.
    pub fn bank(&self, alg: HashAlg) -> Option<&BankValues> {
        self.banks().find(|b| b.alg == alg)
    }
}

/// Read PCR 0–23 of every allocated bank in `banks` with `TPM2_PCR_Read`, at most 8 PCRs per
/// command, until every allocated PCR is read. If `pcrUpdateCounter` differs between any two
/// chunks (a PCR was extended meanwhile), start again, at most [`MAX_REREADS`] times.
pub fn read_pcrs<T: Transport>(t: &mut T, banks: &Banks) -> Result<PcrValues, Error<T::Error>> {
    let command = CommandCode::PCR_READ;
    let bad = |what| Error::Malformed { command, what };
    let mut resp = [0u8; MAX_RESPONSE];
    'again: for _ in 0..MAX_REREADS {
        let mut out =
            PcrValues { update_counter: 0, banks: [PcrValues::EMPTY_BANK; MAX_BANKS], len: 0 };
        let mut counter = None;
        for (slot, (alg, allocated)) in out.banks.iter_mut().zip(banks.active()) {
            slot.alg = alg;
            let mut left = PcrSet(allocated.0 & PcrSet::ALL.0);
            while !left.is_empty() {
                let params = execute(t, command, &pcr_read(alg, left), &mut resp)?;
                let r = parse_pcr_read(params).map_err(bad)?;
                match r.alg {
                    Some(a) if a != alg => return Err(bad(Malformed::Bank(a.0))),
                    _ => {}
                }
                // No progress, or PCRs we did not ask for: the TPM is not answering our question.
                if r.selected.is_empty() || !r.selected.without(left).is_empty() {
                    return Err(bad(Malformed::Selection(r.selected.0)));
                }
                if slot.digest_size != 0 && slot.digest_size != r.digest_size {
                    return Err(bad(Malformed::DigestSize(r.digest_size as u16)));
                }
                if *counter.get_or_insert(r.update_counter) != r.update_counter {
                    continue 'again;
                }
                slot.digest_size = r.digest_size;
                for (i, v) in r.values() {
                    if let Some(dst) =
                        slot.values.get_mut(i as usize).and_then(|d| d.get_mut(..v.len()))
                    {
                        dst.copy_from_slice(v);
                    }
                }
                slot.read = PcrSet(slot.read.0 | r.selected.0);
                left = left.without(r.selected);
            }
            out.len += 1;
        }
        out.update_counter = counter.unwrap_or(0);
        return Ok(out);
    }
    Err(Error::Unstable)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record tokens equal the `format!` spellings they replaced (the oracle), for values
    /// at the edges of every width.
    #[test]
    fn error_tokens_equal_the_format_spellings() {
        use crate::tis::{TisError, Wait};
        use alloc::format;
        use alloc::string::{String, ToString};
        fn token(t: &impl Token) -> String {
            let mut s = String::new();
            t.write_token(&mut s).unwrap();
            s
        }
        for v in [0u32, 1, 0xf, 0x10, 0xff, 0x100, 0xffff, 0x1_0000, u32::MAX] {
            let (a, b, n) = (v as u16, v as u8, v as usize);
            let cases: [(Malformed, String); 14] = [
                (Malformed::Truncated("pcrValues"), "truncated-pcrValues".into()),
                (Malformed::Size { header: v, received: n }, format!("size-{v}-received-{n}")),
                (Malformed::Tag(a), format!("tag-{a:#06x}")),
                (Malformed::Capability(v), format!("capability-{v}")),
                (Malformed::MoreData, "more-data".into()),
                (Malformed::BankCount(v), format!("bank-count-{v}")),
                (Malformed::SelectSize(b), format!("sizeof-select-{b}")),
                (Malformed::Bank(a), format!("bank-{a:#06x}")),
                (Malformed::Selection(v), format!("selection-{v:#x}")),
                (Malformed::DigestCount(v), format!("digest-count-{v}")),
                (Malformed::DigestSize(a), format!("digest-size-{a}")),
                (Malformed::Trailing(n), format!("trailing-{n}")),
                (Malformed::ParameterSize(v), format!("parameter-size-{v}")),
                (Malformed::SignatureAlg(a), format!("signature-alg-{a:#06x}")),
            ];
            for (m, want) in cases {
                assert_eq!(token(&m), want);
                assert_eq!(m.to_string(), want);
                let e: Error<TisError> = Error::Malformed { command: CommandCode(v), what: m };
                assert_eq!(token(&e), format!("cc-{v:#x}-{want}"));
                assert_eq!(e.to_string(), format!("cc-{v:#x}-{want}"));
            }
            let e: Error<TisError> =
                Error::Response { command: CommandCode(v), rc: ResponseCode(v ^ 0x101) };
            let want = format!("rc-{:#x}-cc-{v:#x}", v ^ 0x101);
            assert_eq!((token(&e), e.to_string()), (want.clone(), want));
            let waits = [
                (Wait::Locality, "locality"),
                (Wait::CommandReady, "command-ready"),
                (Wait::BurstCount, "burst-count"),
                (Wait::StsValid, "sts-valid"),
                (Wait::DataAvail, "data-avail"),
            ];
            let mut tis = alloc::vec![
                (TisError::NotPresent(b), format!("tis-not-present-access-{b:#04x}")),
                (TisError::ExpectLost(v), format!("tis-expect-lost-{v:#x}")),
                (TisError::ExpectStuck(v), format!("tis-expect-stuck-{v:#x}")),
                (TisError::ShortBuffer, "tis-short-buffer".into()),
                (TisError::ResponseSize(v), format!("tis-response-size-{v}")),
                (TisError::LeftoverData(v), format!("tis-leftover-data-{v:#x}")),
            ];
            tis.extend(
                waits.map(|(w, n)| (TisError::Timeout(w, v), format!("tis-timeout-{n}-{v:#x}"))),
            );
            for (t, want) in tis {
                assert_eq!(token(&t), want);
                assert_eq!(t.to_string(), want);
                let e: Error<TisError> = Error::Transport(t);
                assert_eq!((token(&e), e.to_string()), (want.clone(), want));
            }
        }
        let e: Error<TisError> = Error::Unstable;
        assert_eq!(
            (token(&e), e.to_string()),
            ("pcr-update-counter-unstable".into(), "pcr-update-counter-unstable".into())
        );
    }
    use alloc::vec::Vec;

    /// §B.3, fresh swtpm state (what OVMF + `vmseal boot` get): four banks, all allocated.
    const CAP_PCRS_4BANKS: [u8; 43] = [
        0x80, 0x01, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x00, // hdr, size 43, rc 0
        0x00, // moreData
        0x00, 0x00, 0x00, 0x05, // capability TPM_CAP_PCRS
        0x00, 0x00, 0x00, 0x04, // TPML_PCR_SELECTION.count
        0x00, 0x04, 0x03, 0xff, 0xff, 0xff, // sha1, 3 bytes, PCR 0-23
        0x00, 0x0b, 0x03, 0xff, 0xff, 0xff, // sha256
        0x00, 0x0c, 0x03, 0xff, 0xff, 0xff, // sha384
        0x00, 0x0d, 0x03, 0xff, 0xff, 0xff, // sha512
    ];

    #[test]
    fn commands_match_the_reference_bytes() {
        // §B.3
        assert_eq!(
            get_capability_pcrs(),
            [
                0x80, 0x01, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x01, 0x7a, // hdr
                0x00, 0x00, 0x00, 0x05, // capability
                0x00, 0x00, 0x00, 0x00, // property
                0x00, 0x00, 0x00, 0x01, // propertyCount
            ]
        );
        // §B.4
        assert_eq!(
            pcr_read(HashAlg::SHA256, PcrSet::ALL),
            [
                0x80, 0x01, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x01, 0x7e, // hdr
                0x00, 0x00, 0x00, 0x01, // count
                0x00, 0x0b, 0x03, 0xff, 0xff, 0xff, // sha256, PCR 0-23
            ]
        );
        // The second chunk of §B.4: `00 ff ff`.
        assert_eq!(pcr_read(HashAlg::SHA256, PcrSet(0xFF_FF00))[17..], [0x00, 0xff, 0xff]);
    }

    #[test]
    fn parses_the_reference_bank_lists() {
        let (rc, params) = parse_header(&CAP_PCRS_4BANKS).unwrap();
        assert_eq!(rc, ResponseCode::SUCCESS);
        let banks = parse_pcr_banks(params).unwrap();
        assert_eq!(
            banks.active().collect::<Vec<_>>(),
            [
                (HashAlg::SHA1, PcrSet::ALL),
                (HashAlg::SHA256, PcrSet::ALL),
                (HashAlg::SHA384, PcrSet::ALL),
                (HashAlg::SHA512, PcrSet::ALL)
            ]
        );
        // `swtpm_setup --pcr-banks sha256`: the other banks listed with an empty bitmap.
        let mut sha256_only = CAP_PCRS_4BANKS;
        for bank in [0, 2, 3] {
            sha256_only[22 + 6 * bank..25 + 6 * bank].fill(0);
        }
        let banks = parse_pcr_banks(&sha256_only[10..]).unwrap();
        assert_eq!(banks.all().count(), 4);
        assert_eq!(banks.active().collect::<Vec<_>>(), [(HashAlg::SHA256, PcrSet::ALL)]);
    }

    #[test]
    fn bad_bank_lists_are_errors() {
        let p = &CAP_PCRS_4BANKS[10..];
        for n in 0..p.len() {
            assert!(parse_pcr_banks(&p[..n]).is_err(), "prefix {n}");
        }
        let mut more = p.to_vec();
        more[0] = 1;
        assert_eq!(parse_pcr_banks(&more), Err(Malformed::MoreData));
        let mut trailing = p.to_vec();
        trailing.push(0);
        assert_eq!(parse_pcr_banks(&trailing), Err(Malformed::Trailing(1)));
        let mut many = p.to_vec();
        many[8] = 9;
        assert_eq!(parse_pcr_banks(&many), Err(Malformed::BankCount(9)));
        let mut big_select = p.to_vec();
        big_select[11] = 5;
        assert_eq!(parse_pcr_banks(&big_select), Err(Malformed::SelectSize(5)));
        let mut cap = p.to_vec();
        cap[4] = 6;
        assert_eq!(parse_pcr_banks(&cap), Err(Malformed::Capability(6)));
    }

    #[test]
    fn headers_are_checked() {
        // §B.1: a failing command returns only the header.
        let fail = [0x80, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x09, 0x22];
        assert_eq!(parse_header(&fail), Ok((ResponseCode::RETRY, &[][..])));
        assert!(ResponseCode::RETRY.is_retry());
        assert_eq!(parse_header(&fail[..9]), Err(Malformed::Truncated("responseCode")));
        let mut long = fail.to_vec();
        long.push(0);
        assert_eq!(parse_header(&long), Err(Malformed::Size { header: 10, received: 11 }));
        let mut tag = fail;
        tag[1] = 0x03;
        assert_eq!(parse_header(&tag), Err(Malformed::Tag(0x8003)));
    }

    /// §B.4's first response shape: counter 20, sha256 PCR 0–7, 8 digests.
    fn pcr_read_response(
        counter: u32,
        alg: HashAlg,
        sel: PcrSet,
        value: impl Fn(u32) -> u8,
    ) -> Vec<u8> {
        let size = alg.digest_size().unwrap();
        let mut b = Vec::new();
        b.extend_from_slice(&[0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&counter.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&alg.0.to_be_bytes());
        b.push(3);
        b.extend_from_slice(&sel.0.to_le_bytes()[..3]);
        b.extend_from_slice(&sel.len().to_be_bytes());
        for i in sel.iter() {
            b.extend_from_slice(&(size as u16).to_be_bytes());
            b.extend(core::iter::repeat_n(value(i), size));
        }
        let n = b.len() as u32;
        b[2..6].copy_from_slice(&n.to_be_bytes());
        b
    }

    #[test]
    fn parses_the_reference_pcr_read() {
        let resp = pcr_read_response(20, HashAlg::SHA256, PcrSet(0xFF), |i| i as u8);
        assert_eq!(resp.len(), 300); // §B.4: "300-byte response"
        assert_eq!(
            resp[..24],
            [
                0x80, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x00, 0x00, 0x00, // hdr, size 300
                0x00, 0x00, 0x00, 0x14, // pcrUpdateCounter 20
                0x00, 0x00, 0x00, 0x01, 0x00, 0x0b, 0x03, 0xff, 0x00, 0x00, // sha256 PCR 0-7
            ]
        );
        let (_, params) = parse_header(&resp).unwrap();
        let r = parse_pcr_read(params).unwrap();
        assert_eq!(
            (r.update_counter, r.alg, r.selected),
            (20, Some(HashAlg::SHA256), PcrSet(0xFF))
        );
        let v: Vec<_> = r.values().collect();
        assert_eq!(v.len(), 8);
        assert_eq!(v[7], (7, &[7u8; 32][..]));
        for n in 0..params.len() {
            assert!(parse_pcr_read(&params[..n]).is_err(), "prefix {n}");
        }
        let mut count = params.to_vec();
        count[17] = 7;
        assert_eq!(parse_pcr_read(&count), Err(Malformed::DigestCount(7)));
        let mut size = params.to_vec();
        size[19] = 20;
        assert_eq!(parse_pcr_read(&size), Err(Malformed::DigestSize(20)));
    }

    #[test]
    fn random_responses_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let n = (x >> 40) as usize % buf.len();
            // Small counts and sizes, so that some inputs get deep into the parsers.
            buf[3] &= 3;
            buf[7] &= 3;
            let _ = parse_header(&buf[..n]);
            let _ = parse_pcr_banks(&buf[..n]);
            if let Ok(r) = parse_pcr_read(&buf[..n]) {
                assert_eq!(r.values().count() as u32, r.selected.len());
            }
        }
    }

    /// A TPM behind [`Transport`]: every PCR of bank `alg` has value `[pcr + alg; size]`.
    struct Fake {
        banks: Vec<u8>,
        counters: Vec<u32>,
        sent: usize,
        retry_first: bool,
        max_per_read: u32,
    }

    impl Transport for Fake {
        type Error = &'static str;
        fn transact(&mut self, cmd: &[u8], resp: &mut [u8]) -> Result<usize, &'static str> {
            self.sent += 1;
            let out = if self.retry_first {
                self.retry_first = false;
                alloc::vec![0x80, 0x01, 0, 0, 0, 0x0a, 0, 0, 0x09, 0x22]
            } else if cmd == get_capability_pcrs() {
                self.banks.clone()
            } else {
                let alg = HashAlg(u16::from_be_bytes([cmd[14], cmd[15]]));
                let mut sel = u32::from_le_bytes([cmd[17], cmd[18], cmd[19], 0]);
                // Keep the lowest `max_per_read` PCRs, as a TPM does with 8.
                let mut kept = PcrSet::EMPTY;
                for i in PcrSet(sel).iter().take(self.max_per_read as usize) {
                    kept.0 |= 1 << i;
                }
                sel = kept.0;
                let counter = if self.counters.len() > 1 {
                    self.counters.remove(0)
                } else {
                    self.counters[0]
                };
                pcr_read_response(counter, alg, PcrSet(sel), |i| i as u8 + alg.0 as u8)
            };
            resp.get_mut(..out.len()).ok_or("small")?.copy_from_slice(&out);
            Ok(out.len())
        }
    }

    #[test]
    fn reads_every_pcr_of_every_bank_in_chunks_of_8() {
        let mut t = Fake {
            banks: CAP_PCRS_4BANKS.to_vec(),
            counters: alloc::vec![20],
            sent: 0,
            retry_first: true,
            max_per_read: 8,
        };
        let banks = read_banks(&mut t).unwrap();
        assert_eq!(t.sent, 2); // one TPM_RC_RETRY, resent
        let v = read_pcrs(&mut t, &banks).unwrap();
        assert_eq!(t.sent, 2 + 4 * 3);
        assert_eq!(v.update_counter, 20);
        assert_eq!(v.banks().count(), 4);
        let sha384 = v.bank(HashAlg::SHA384).unwrap();
        assert_eq!(sha384.read, PcrSet::ALL);
        assert_eq!(sha384.get(23), Some(&[23 + 0x0c; 48][..]));
        assert_eq!(sha384.iter().count(), 24);
        assert_eq!(sha384.get(24), None);
    }

    #[test]
    fn a_changing_counter_rereads_then_gives_up() {
        let mut t = Fake {
            banks: CAP_PCRS_4BANKS.to_vec(),
            counters: alloc::vec![20, 20, 21, 21],
            sent: 0,
            retry_first: false,
            max_per_read: 8,
        };
        let banks = read_banks(&mut t).unwrap();
        let v = read_pcrs(&mut t, &banks).unwrap();
        assert_eq!(v.update_counter, 21);
        // 3 chunks of the aborted attempt, then 12 of the good one.
        assert_eq!(t.sent, 1 + 3 + 12);

        t.counters = (0..100).collect();
        assert_eq!(read_pcrs(&mut t, &banks), Err(Error::Unstable));
    }

    #[test]
    fn a_tpm_that_returns_nothing_is_an_error() {
        let mut t = Fake {
            banks: CAP_PCRS_4BANKS.to_vec(),
            counters: alloc::vec![1],
            sent: 0,
            retry_first: false,
            max_per_read: 0,
        };
        let banks = read_banks(&mut t).unwrap();
        let e = read_pcrs(&mut t, &banks).unwrap_err();
        assert_eq!(
            e,
            Error::Malformed { command: CommandCode::PCR_READ, what: Malformed::Selection(0) }
        );
        assert_eq!(alloc::format!("{e}"), "cc-0x17e-selection-0x0");
    }

    #[test]
    fn quote_recipes() {
        // §B.6: the tested CreatePrimary bytes.
        let cp = create_primary_ecc_ak();
        assert_eq!(cp.len(), 0x41);
        assert_eq!(&cp[10..14], &[0x40, 0, 0, 0x0b]);
        // §B.7: 73 bytes for a 32-byte nonce and PCR 0-23.
        let mut q = [0u8; QUOTE_MAX];
        let n = quote(0x8000_0000, &[0xAA; 32], PcrSet::ALL, &mut q).unwrap();
        assert_eq!(n, 0x49);
        #[rustfmt::skip]
        let head: &[u8] = &[
            0x80, 0x02, 0, 0, 0, 0x49, 0, 0, 0x01, 0x58,
            0x80, 0, 0, 0,
            0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0,
            0, 0x20,
        ];
        assert_eq!(&q[..head.len()], head);
        assert_eq!(&q[n - 12..n], &[0, 0x10, 0, 0, 0, 1, 0, 0x0b, 3, 0xff, 0xff, 0xff]);
        assert!(quote(1, &[0; 65], PcrSet::ALL, &mut q).is_none());
        assert_eq!(
            flush_context(0x8000_0000),
            [0x80, 1, 0, 0, 0, 0x0e, 0, 0, 1, 0x65, 0x80, 0, 0, 0]
        );
        // The whole §B.6 command, as the reference sent it to swtpm.
        assert_eq!(
            cp,
            unhex(
                "8002 00000041 00000131 4000000b 00000009 40000009 0000 00 0000 \
                 0004 0000 0000 0018 0023 000b 00050072 0000 0010 0018 000b 0003 0010 \
                 0000 0000 0000 00000000"
            )[..]
        );
        // The whole §B.7 command (nonce `aa` × 32, SHA-256 PCR 0-23).
        let mut want = unhex("8002 00000049 00000158 80000000 00000009 40000009 0000 00 0000 0020");
        want.extend([0xAA; 32]);
        want.extend(unhex("0010 00000001 000b 03 ffffff"));
        assert_eq!(q[..n], want[..]);
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        s.chunks(2)
            .map(|c| u8::from_str_radix(core::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect()
    }

    /// A §B.6 CreatePrimary response (312 bytes) with X = 0x11.., Y = 0x22...
    fn create_primary_response() -> Vec<u8> {
        let mut b = unhex("80020000013800000000 80000000 00000121");
        b.extend(unhex("0058 0023000b00050072000000100018000b00030010"));
        b.extend(unhex("0020"));
        b.extend([0x11; 32]);
        b.extend(unhex("0020"));
        b.extend([0x22; 32]);
        b.extend(unhex("0037 00000000 0020"));
        b.extend([0x33; 32]);
        b.extend(unhex("01 0010 0004 4000000b 0004 4000000b 0000"));
        b.extend(unhex("0020"));
        b.extend([0x44; 32]);
        b.extend(unhex("8021 4000000b 0040"));
        b.extend([0x55; 64]);
        b.extend(unhex("0022 000b"));
        b.extend([0x66; 32]);
        b.extend(unhex("0000010000"));
        b
    }

    /// A §B.7 Quote response (238 bytes): a 145-byte TPMS_ATTEST and an ECDSA signature.
    fn quote_response() -> Vec<u8> {
        let mut b = unhex("8002 000000ee 00000000 000000db 0091");
        b.extend(unhex("ff544347 8018 0022 000b"));
        b.extend([0x77; 32]);
        b.extend(unhex("0020"));
        b.extend([0xAA; 32]);
        b.extend(unhex("0000000000000032 00000001 00000000 01 2019102300163636"));
        b.extend(unhex("00000001 000b 03 ffffff 0020"));
        b.extend([0x88; 32]);
        b.extend(unhex("0018 000b 0020"));
        b.extend([0x99; 32]);
        b.extend(unhex("0020"));
        b.extend([0xBB; 32]);
        b.extend(unhex("0000010000"));
        b
    }

    #[test]
    fn parses_the_reference_create_primary_and_quote_responses() {
        let cp = create_primary_response();
        assert_eq!(cp.len(), 312);
        let (rc, rest) = parse_header(&cp).unwrap();
        assert_eq!(rc, ResponseCode::SUCCESS);
        let p = parse_create_primary(rest).unwrap();
        assert_eq!(p.handle, 0x8000_0000);
        assert_eq!(p.public.len(), 88);
        assert_eq!(p.public[..20], AK_TEMPLATE_PREFIX);
        assert_eq!(p.public[22..54], [0x11; 32]); // X, §B.6
        assert_eq!(p.public[56..88], [0x22; 32]); // Y
        for k in 0..rest.len() - 5 {
            assert!(parse_create_primary(&rest[..k]).is_err(), "prefix {k}");
        }
        let mut big = rest.to_vec();
        big[7] = 0xFF; // parameterSize past the end
        assert_eq!(parse_create_primary(&big), Err(Malformed::ParameterSize(0x1FF)));

        let q = quote_response();
        assert_eq!(q.len(), 238);
        let (rc, rest) = parse_header(&q).unwrap();
        assert_eq!(rc, ResponseCode::SUCCESS);
        let quote = parse_quote(rest).unwrap();
        assert_eq!(quote.attest.len(), 145);
        assert_eq!(quote.attest[..6], [0xff, 0x54, 0x43, 0x47, 0x80, 0x18]);
        assert_eq!(quote.attest[44..76], [0xAA; 32]); // extraData = the nonce, §B.7
        assert_eq!(quote.signature.len(), 72);
        assert_eq!(quote.signature[..6], [0, 0x18, 0, 0x0b, 0, 0x20]);
        for k in 0..rest.len() - 5 {
            assert!(parse_quote(&rest[..k]).is_err(), "prefix {k}");
        }
        let mut alg = rest.to_vec();
        alg[4 + 147 + 1] = 0x10; // sigAlg NULL
        assert_eq!(parse_quote(&alg), Err(Malformed::SignatureAlg(0x10)));
        // A failed quote is the bare header with tag 0x8001 (§B.1).
        let fail = unhex("80010000000a00000922");
        assert_eq!(parse_header(&fail), Ok((ResponseCode::RETRY, &[][..])));
    }

    #[test]
    fn credential_activation_commands_say_their_own_size() {
        let size = |c: &[u8]| u32::from_be_bytes([c[2], c[3], c[4], c[5]]) as usize;
        let ek = create_primary_ecc_ek();
        assert_eq!(size(&ek), ek.len());
        // inPublic's size covers the template up to the end of unique.y.
        assert_eq!(usize::from(u16::from_be_bytes([ek[33], ek[34]])), 157 - 35);
        assert_eq!(&ek[35..43], &[0, 0x23, 0, 0x0b, 0, 0x03, 0, 0xb2]);
        let s = start_policy_session(&[7; 16]);
        assert_eq!(size(&s), s.len());
        assert_eq!(&s[20..36], &[7; 16]);
        let p = policy_secret_endorsement(0x0300_0000);
        assert_eq!(size(&p), p.len());
        let mut out = [0u8; 200];
        let n = activate_credential(
            0x8000_0001,
            0x8000_0000,
            0x0300_0000,
            &[0, 2, 1, 2],
            &[0, 1, 9],
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 47);
        assert_eq!(size(&out), n);
        assert_eq!(&out[n - 7..n], &[0, 2, 1, 2, 0, 1, 9]);
        assert!(activate_credential(1, 2, 3, &[0; 100], &[0; 100], &mut [0u8; 64]).is_none());
        assert_eq!(parse_start_auth_session(&[3, 0, 0, 0, 0, 2, 1, 2]), Ok(0x0300_0000));
        assert_eq!(
            parse_activate_credential(&[0, 0, 0, 4, 0, 2, 5, 6, 0, 0, 1, 0, 0]),
            Ok(&[5u8, 6][..])
        );
    }
}
