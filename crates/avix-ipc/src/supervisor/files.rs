//! The files a service shows: its log (captured output, rotated) and
//! `/proc/services/<name>/{status.yaml,log,ctl}`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use avix_proto::Document;
use avix_proto::time::Timestamp;
use avix_vfs::{SynthFile, VfsError, VfsPath};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Ctl, LOG_ROTATE_BYTES, LOG_TAIL_BYTES, Slot, Supervisor, status_of};

pub(super) struct LogSink {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
}

impl LogSink {
    pub(super) fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Self {
            path: path.to_owned(),
            file,
            size,
        }
    }

    fn line(&mut self, stream: &str, text: &str) {
        if self.size > LOG_ROTATE_BYTES {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            *self = Self::open(&self.path);
        }
        let l = format!("{} {stream}: {text}\n", Timestamp::now());
        if let Some(f) = &mut self.file
            && f.write_all(l.as_bytes()).is_ok()
        {
            self.size += l.len() as u64;
        }
    }
}

fn tail(path: &Path, max: u64) -> Bytes {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Bytes::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut v = Vec::new();
    let _ = f.read_to_end(&mut v);
    if len > max
        && let Some(nl) = v.iter().position(|b| *b == b'\n')
    {
        v.drain(..=nl);
    }
    Bytes::from(v)
}

pub(super) async fn pump(
    r: impl tokio::io::AsyncRead + Unpin,
    stream: &'static str,
    sink: Arc<Mutex<LogSink>>,
) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        sink.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .line(stream, &l);
    }
}

impl Supervisor {
    pub(super) fn publish(&self, slot: &Arc<Slot>) {
        let vfs = self.kernel.vfs();
        let base = format!("/proc/services/{}", slot.name);
        let Ok(status_p) = VfsPath::parse(&format!("{base}/status.yaml")) else {
            return;
        };
        let (Ok(log_p), Ok(ctl_p)) = (
            VfsPath::parse(&format!("{base}/log")),
            VfsPath::parse(&format!("{base}/ctl")),
        ) else {
            return;
        };
        let (w, p, sup) = (Arc::downgrade(slot), status_p.clone(), self.me.clone());
        let status = SynthFile::computed(move |_| {
            let s = w.upgrade().ok_or_else(|| VfsError::NotFound(p.clone()))?;
            let mut st = status_of(&s);
            if let Some(sup) = sup.upgrade() {
                st.tools = sup.tools_of(&s);
            }
            Ok(Document::new(st)
                .to_yaml()
                .map(Bytes::from)
                .unwrap_or_default())
        });
        let (w, p) = (Arc::downgrade(slot), log_p.clone());
        let log = SynthFile::computed(move |_| {
            let s = w.upgrade().ok_or_else(|| VfsError::NotFound(p.clone()))?;
            Ok(tail(&s.log_path, LOG_TAIL_BYTES))
        });
        let (w, p) = (Arc::downgrade(slot), ctl_p.clone());
        let ctl = SynthFile::control(
            |_| Ok(Bytes::from_static(b"start | stop | restart\n")),
            move |caller, data| {
                avix_kernel::policy::control_services(caller)
                    .map_err(|e| VfsError::refused(&p, &e))?;
                let s = w.upgrade().ok_or_else(|| VfsError::NotFound(p.clone()))?;
                let c = match std::str::from_utf8(data).map(str::trim) {
                    Ok("start") => Ctl::Start,
                    Ok("stop") => Ctl::Stop,
                    Ok("restart") => Ctl::Restart,
                    _ => {
                        return Err(VfsError::InvalidInput {
                            path: p.clone(),
                            reason: "write start, stop or restart".into(),
                        });
                    }
                };
                let _ = s.ctl.send(c);
                Ok(None)
            },
        );
        for (p, file) in [(status_p, status), (log_p, log), (ctl_p, ctl)] {
            if let Err(e) = vfs.publish(&p, file) {
                tracing::warn!(path = %p, error = %e, "cannot publish a service file");
            }
        }
    }

    pub(super) fn unpublish(&self, name: &str) {
        for f in ["status.yaml", "log", "ctl"] {
            if let Ok(p) = VfsPath::parse(&format!("/proc/services/{name}/{f}")) {
                self.kernel.vfs().unpublish(&p);
            }
        }
    }
}
