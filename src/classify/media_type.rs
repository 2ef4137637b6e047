//! The media types of request bodies: the five patch types and the body formats, as the
//! apiserver reads a `Content-Type`.
//!
//! Owns: the mapping from a `Content-Type` to a [`PatchType`] or [`BodyFormat`]. Does not
//! own: decoding the bodies (`analysis`, `tree`, `protobuf`).

use serde::Serialize;

/// The five patch media types the apiserver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchType {
    /// `application/json-patch+json`
    JsonPatch,
    /// `application/merge-patch+json`
    MergePatch,
    /// `application/strategic-merge-patch+json`
    StrategicMergePatch,
    /// `application/apply-patch+yaml` (server-side apply)
    ApplyPatchYaml,
    /// `application/apply-patch+cbor` (server-side apply)
    ApplyPatchCbor,
}

impl PatchType {
    /// The patch type of a PATCH request's `Content-Type`, read as the apiserver reads it:
    /// the value up to the first `;`, compared exactly.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media_type = content_type.split(';').next().unwrap_or_default();
        match media_type {
            "application/json-patch+json" => Some(Self::JsonPatch),
            "application/merge-patch+json" => Some(Self::MergePatch),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMergePatch),
            "application/apply-patch+yaml" => Some(Self::ApplyPatchYaml),
            "application/apply-patch+cbor" => Some(Self::ApplyPatchCbor),
            _ => None,
        }
    }

    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::JsonPatch => "application/json-patch+json",
            Self::MergePatch => "application/merge-patch+json",
            Self::StrategicMergePatch => "application/strategic-merge-patch+json",
            Self::ApplyPatchYaml => "application/apply-patch+yaml",
            Self::ApplyPatchCbor => "application/apply-patch+cbor",
        }
    }

    /// Server-side apply (either encoding).
    pub fn is_apply(self) -> bool {
        matches!(self, Self::ApplyPatchYaml | Self::ApplyPatchCbor)
    }

    pub(super) fn body_format(self) -> BodyFormat {
        match self {
            Self::JsonPatch | Self::MergePatch | Self::StrategicMergePatch => BodyFormat::Json,
            Self::ApplyPatchYaml => BodyFormat::Yaml,
            Self::ApplyPatchCbor => BodyFormat::Cbor,
        }
    }
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    #[default]
    None,
    Json,
    Yaml,
    Protobuf,
    Cbor,
    /// Undecodable or an unknown media type.
    Unknown,
}

impl BodyFormat {
    /// The format of a create/update/delete body from its `Content-Type` (type and subtype
    /// compared case-insensitively, parameters ignored; none at all means JSON, as in the
    /// apiserver).
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        let Some(content_type) = content_type else {
            return Self::Json;
        };
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "" | "application/json" => Self::Json,
            "application/yaml" => Self::Yaml,
            "application/vnd.kubernetes.protobuf" => Self::Protobuf,
            "application/cbor" => Self::Cbor,
            _ => Self::Unknown,
        }
    }
}
