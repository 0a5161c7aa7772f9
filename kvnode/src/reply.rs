//! Typed replies become RESP frames here, and only here.

use crate::error::{error_reply, Error};
use crate::resp::Frame;
use crate::state_machine::Reply;

impl From<Reply> for Frame {
    fn from(reply: Reply) -> Frame {
        match reply {
            Reply::Ok => Frame::ok(),
            Reply::Simple(word) => Frame::Simple(word.to_owned()),
            Reply::Nil => Frame::Null,
            Reply::NilArray => Frame::NullArray,
            Reply::Integer(value) => Frame::Integer(value),
            Reply::Bulk(data) => Frame::Bulk(data),
            Reply::Array(items) => Frame::Array(items.into_iter().map(Frame::from).collect()),
            Reply::Error(error) => error_reply(&Error::Command(error)),
        }
    }
}
