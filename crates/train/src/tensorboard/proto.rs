//! The protocol buffer messages of TensorBoard's event files, as `prost` derives written by
//! hand (no `protoc` at build time): the fields of TensorFlow's `event.proto` and
//! `summary.proto` that scalars and images use, with their numbers.

/// `tensorflow.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

/// The `what` of an [`Event`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The first event of a file: `brain.Event:2`.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Scalars and images.
    #[prost(message, tag = "5")]
    Summary(Summary),
    /// A session's start (after which readers drop what an earlier file logged at later
    /// steps: the steps a killed run had not checkpointed).
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// 1: START, 2: STOP, 3: CHECKPOINT.
    #[prost(int32, tag = "1")]
    pub status: i32,
    /// The checkpoint's path (for CHECKPOINT).
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    /// A message.
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// `SessionLog.SessionStatus.START`.
pub const SESSION_START: i32 = 1;

/// `tensorflow.Summary`: values logged at one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `tensorflow.Summary.Value`: one tagged scalar or image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The series' name, e.g. `epoch/test_neg_elbo`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The value.
    #[prost(oneof = "Content", tags = "2, 4")]
    pub value: Option<Content>,
}

/// The value of a [`Value`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Content {
    /// A scalar.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// An encoded image.
    #[prost(message, tag = "4")]
    Image(Image),
}

/// `tensorflow.Summary.Image`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Height in pixels.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Width in pixels.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1: grey, 3: RGB, 4: RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The PNG bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}
