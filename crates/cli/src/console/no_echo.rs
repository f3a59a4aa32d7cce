//! Terminal echo off while a command prints its results, so that text
//! typed meanwhile is not mixed into them (it stays in the terminal's input
//! and appears at the next prompt).

/// Echo is off while this lives (when standard input is a terminal).
pub(crate) struct NoEcho {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl NoEcho {
    pub(crate) fn start() -> NoEcho {
        #[cfg(unix)]
        {
            let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
            // SAFETY: tcgetattr fills the termios it is given; it is read
            // only when tcgetattr reports success.
            let saved = unsafe {
                if libc::isatty(libc::STDIN_FILENO) == 1
                    && libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) == 0
                {
                    Some(t.assume_init())
                } else {
                    None
                }
            };
            if let Some(old) = saved {
                let mut quiet = old;
                quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
                // SAFETY: `quiet` is a valid termios derived from tcgetattr.
                unsafe {
                    libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet);
                }
            }
            NoEcho { saved }
        }
        #[cfg(not(unix))]
        NoEcho {}
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(t) = &self.saved {
            // SAFETY: `t` is the termios obtained from tcgetattr.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
            }
        }
    }
}
