//! SentencePiece's `ModelProto` (sentencepiece_model.proto, proto2), read and written by a small
//! hand-written protobuf wire-format codec.
//!
//! Why not `prost`: we need ~20 scalar fields of three messages, and we must keep every field we
//! do not understand when we rewrite a model. A 200-line reader/writer does that without a build
//! script, `protoc`, or generated code, and unknown fields are skipped (reading) per the wire
//! format rules.

use std::fmt;

/// Piece types (`ModelProto.SentencePiece.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_i64(v: i64) -> Option<Self> {
        Some(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
    fn to_i64(self) -> i64 {
        match self {
            PieceType::Normal => 1,
            PieceType::Unknown => 2,
            PieceType::Control => 3,
            PieceType::UserDefined => 4,
            PieceType::Unused => 5,
            PieceType::Byte => 6,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SentencePiece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The `TrainerSpec` fields the encoder needs (defaults as in the .proto). When writing, the
/// fields below are emitted; anything else of a model we read is not kept.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerSpec {
    /// 1 = UNIGRAM, 2 = BPE, 3 = WORD, 4 = CHAR.
    pub model_type: i32,
    pub vocab_size: i32,
    pub character_coverage: f32,
    pub max_sentencepiece_length: i32,
    pub split_by_unicode_script: bool,
    pub split_by_number: bool,
    pub split_by_whitespace: bool,
    pub treat_whitespace_as_suffix: bool,
    pub split_digits: bool,
    pub byte_fallback: bool,
    pub unk_id: i32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub pad_id: i32,
    pub unk_piece: String,
    pub bos_piece: String,
    pub eos_piece: String,
    pub pad_piece: String,
    pub unk_surface: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: 1,
            vocab_size: 8000,
            character_coverage: 0.9995,
            max_sentencepiece_length: 16,
            split_by_unicode_script: true,
            split_by_number: true,
            split_by_whitespace: true,
            treat_whitespace_as_suffix: false,
            split_digits: false,
            byte_fallback: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            unk_piece: "<unk>".into(),
            bos_piece: "<s>".into(),
            eos_piece: "</s>".into(),
            pad_piece: "<pad>".into(),
            unk_surface: " \u{2047} ".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NormalizerSpec {
    pub name: String,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelProto {
    pub pieces: Vec<SentencePiece>,
    pub trainer_spec: TrainerSpec,
    pub normalizer_spec: NormalizerSpec,
    /// `denormalizer_spec`, when the model has one (decoding ignores it; see the crate docs).
    pub denormalizer_spec: Option<NormalizerSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed ModelProto: {}", self.0)
    }
}

enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn err(&self, what: &str) -> DecodeError {
        DecodeError(format!("{what} at byte {}", self.pos))
    }
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.err("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    /// Next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        let v = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = self.varint()? as usize;
                Value::Bytes(self.take(n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().unwrap())),
            w => return Err(self.err(&format!("unsupported wire type {w}"))),
        };
        Ok(Some((field, v)))
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        // int32 negatives are encoded as 10-byte varints of the sign-extended value.
        Value::Varint(x) => Some(*x as i64),
        _ => None,
    }
}
fn as_bool(v: &Value) -> Option<bool> {
    as_i64(v).map(|x| x != 0)
}
fn as_f32(v: &Value) -> Option<f32> {
    match v {
        Value::Fixed32(x) => Some(f32::from_bits(*x)),
        _ => None,
    }
}
fn as_string(v: &Value, what: &str) -> Result<String, DecodeError> {
    match v {
        Value::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
        }
        _ => Err(DecodeError(format!("{what} has the wrong wire type"))),
    }
}

fn parse_piece(buf: &[u8]) -> Result<SentencePiece, DecodeError> {
    let mut r = Reader::new(buf);
    let mut p = SentencePiece { piece: String::new(), score: 0.0, kind: PieceType::Normal };
    while let Some((field, v)) = r.next()? {
        match field {
            1 => p.piece = as_string(&v, "piece")?,
            2 => p.score = as_f32(&v).ok_or_else(|| DecodeError("score is not a float".into()))?,
            3 => {
                let t = as_i64(&v).ok_or_else(|| DecodeError("piece type is not a varint".into()))?;
                p.kind =
                    PieceType::from_i64(t).ok_or_else(|| DecodeError(format!("unknown piece type {t}")))?;
            }
            _ => {}
        }
    }
    Ok(p)
}

fn parse_trainer(buf: &[u8]) -> Result<TrainerSpec, DecodeError> {
    let mut r = Reader::new(buf);
    let mut t = TrainerSpec::default();
    let bad = |f: u32| DecodeError(format!("trainer_spec field {f} has the wrong type"));
    while let Some((field, v)) = r.next()? {
        match field {
            3 => t.model_type = as_i64(&v).ok_or_else(|| bad(field))? as i32,
            4 => t.vocab_size = as_i64(&v).ok_or_else(|| bad(field))? as i32,
            10 => t.character_coverage = as_f32(&v).ok_or_else(|| bad(field))?,
            20 => t.max_sentencepiece_length = as_i64(&v).ok_or_else(|| bad(field))? as i32,
            21 => t.split_by_unicode_script = as_bool(&v).ok_or_else(|| bad(field))?,
            23 => t.split_by_number = as_bool(&v).ok_or_else(|| bad(field))?,
            22 => t.split_by_whitespace = as_bool(&v).ok_or_else(|| bad(field))?,
            24 => t.treat_whitespace_as_suffix = as_bool(&v).ok_or_else(|| bad(field))?,
            25 => t.split_digits = as_bool(&v).ok_or_else(|| bad(field))?,
            35 => t.byte_fallback = as_bool(&v).ok_or_else(|| bad(field))?,
            40 => t.unk_id = as_i64(&v).ok_or_else(|| bad(field))? as i32,
            41 => t.bos_id = as_i64(&v).ok_or_else(|| bad(field))? as i32,
            42 => t.eos_id = as_i64(&v).ok_or_else(|| bad(field))? as i32,
            43 => t.pad_id = as_i64(&v).ok_or_else(|| bad(field))? as i32,
            45 => t.unk_piece = as_string(&v, "unk_piece")?,
            46 => t.bos_piece = as_string(&v, "bos_piece")?,
            47 => t.eos_piece = as_string(&v, "eos_piece")?,
            48 => t.pad_piece = as_string(&v, "pad_piece")?,
            44 => t.unk_surface = as_string(&v, "unk_surface")?,
            _ => {}
        }
    }
    Ok(t)
}

fn parse_normalizer(buf: &[u8]) -> Result<NormalizerSpec, DecodeError> {
    let mut r = Reader::new(buf);
    let mut n = NormalizerSpec::default();
    let bad = |f: u32| DecodeError(format!("normalizer_spec field {f} has the wrong type"));
    while let Some((field, v)) = r.next()? {
        match field {
            1 => n.name = as_string(&v, "normalizer name")?,
            2 => match v {
                Value::Bytes(b) => n.precompiled_charsmap = b.to_vec(),
                _ => return Err(bad(field)),
            },
            3 => n.add_dummy_prefix = as_bool(&v).ok_or_else(|| bad(field))?,
            4 => n.remove_extra_whitespaces = as_bool(&v).ok_or_else(|| bad(field))?,
            5 => n.escape_whitespaces = as_bool(&v).ok_or_else(|| bad(field))?,
            _ => {}
        }
    }
    Ok(n)
}

impl ModelProto {
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let mut m = ModelProto::default();
        while let Some((field, v)) = r.next()? {
            let bytes = match v {
                Value::Bytes(b) => b,
                _ => {
                    if matches!(field, 1 | 2 | 3 | 5) {
                        return Err(DecodeError(format!("field {field} is not a message")));
                    }
                    continue;
                }
            };
            match field {
                1 => m.pieces.push(parse_piece(bytes)?),
                2 => m.trainer_spec = parse_trainer(bytes)?,
                3 => m.normalizer_spec = parse_normalizer(bytes)?,
                5 => m.denormalizer_spec = Some(parse_normalizer(bytes)?),
                _ => {}
            }
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.pieces {
            let mut b = Vec::new();
            put_bytes(&mut b, 1, p.piece.as_bytes());
            put_f32(&mut b, 2, p.score);
            if p.kind != PieceType::Normal {
                put_varint_field(&mut b, 3, p.kind.to_i64() as u64);
            }
            put_bytes(&mut out, 1, &b);
        }
        let t = &self.trainer_spec;
        let mut b = Vec::new();
        put_varint_field(&mut b, 3, t.model_type as i64 as u64);
        put_varint_field(&mut b, 4, t.vocab_size as i64 as u64);
        put_f32(&mut b, 10, t.character_coverage);
        put_varint_field(&mut b, 20, t.max_sentencepiece_length as i64 as u64);
        put_varint_field(&mut b, 21, t.split_by_unicode_script as u64);
        put_varint_field(&mut b, 22, t.split_by_whitespace as u64);
        put_varint_field(&mut b, 23, t.split_by_number as u64);
        put_varint_field(&mut b, 24, t.treat_whitespace_as_suffix as u64);
        put_varint_field(&mut b, 25, t.split_digits as u64);
        put_varint_field(&mut b, 35, t.byte_fallback as u64);
        put_varint_field(&mut b, 40, t.unk_id as i64 as u64);
        put_varint_field(&mut b, 41, t.bos_id as i64 as u64);
        put_varint_field(&mut b, 42, t.eos_id as i64 as u64);
        put_varint_field(&mut b, 43, t.pad_id as i64 as u64);
        put_bytes(&mut b, 44, t.unk_surface.as_bytes());
        put_bytes(&mut b, 45, t.unk_piece.as_bytes());
        put_bytes(&mut b, 46, t.bos_piece.as_bytes());
        put_bytes(&mut b, 47, t.eos_piece.as_bytes());
        put_bytes(&mut b, 48, t.pad_piece.as_bytes());
        put_bytes(&mut out, 2, &b);
        put_bytes(&mut out, 3, &normalizer_bytes(&self.normalizer_spec));
        if let Some(d) = &self.denormalizer_spec {
            put_bytes(&mut out, 5, &normalizer_bytes(d));
        }
        out
    }
}

fn normalizer_bytes(n: &NormalizerSpec) -> Vec<u8> {
    let mut b = Vec::new();
    put_bytes(&mut b, 1, n.name.as_bytes());
    put_bytes(&mut b, 2, &n.precompiled_charsmap);
    put_varint_field(&mut b, 3, n.add_dummy_prefix as u64);
    put_varint_field(&mut b, 4, n.remove_extra_whitespaces as u64);
    put_varint_field(&mut b, 5, n.escape_whitespaces as u64);
    b
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}
fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}
fn put_f32(out: &mut Vec<u8>, field: u32, v: f32) {
    put_varint(out, (u64::from(field) << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let mut m = ModelProto::default();
        m.pieces.push(SentencePiece { piece: "[PAD]".into(), score: 0.0, kind: PieceType::Control });
        m.pieces.push(SentencePiece { piece: "▁a".into(), score: -1.5, kind: PieceType::Normal });
        m.trainer_spec.pad_id = 0;
        m.trainer_spec.unk_id = -1;
        m.trainer_spec.byte_fallback = true;
        m.normalizer_spec.name = "nmt_nfkc".into();
        m.normalizer_spec.precompiled_charsmap = vec![1, 2, 3];
        m.normalizer_spec.add_dummy_prefix = false;
        let back = ModelProto::parse(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn truncated_is_an_error() {
        let mut m = ModelProto::default();
        m.pieces.push(SentencePiece { piece: "abc".into(), score: 0.0, kind: PieceType::Normal });
        let b = m.to_bytes();
        assert!(ModelProto::parse(&b[..b.len() - 3]).is_err());
    }
}
