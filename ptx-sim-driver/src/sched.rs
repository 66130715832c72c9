//! Deferred stream work and the order it runs in.
//!
//! Nothing runs when it is enqueued. Work runs when a synchronisation point needs it: a
//! stream, event or context synchronisation or query, a copy to pageable host memory, a
//! synchronous call. Only the work that point depends on runs (its stream up to that
//! point, and what event waits and the legacy stream's implicit ordering make it wait
//! for). When a context synchronisation runs several streams, the stream whose next work
//! was enqueued last goes first. So two streams that a program forgot to order with an
//! event run in the order that breaks it, and a test sees stale data instead of passing by
//! luck.

use crate::abi::CUresult;
use crate::fault;
use crate::state::{Driver, Op, Res, Work};

impl Driver {
    /// Appends `op` to `stream`, after the implicit waits of the legacy stream semantics:
    /// the legacy stream waits for every blocking stream of its context, and a blocking
    /// stream waits for the legacy stream.
    pub fn enqueue(&mut self, stream: usize, op: Op) {
        let (ctx, blocking, legacy) = {
            let s = &self.streams[&stream];
            (s.ctx, s.blocking, s.legacy)
        };
        let mut waits = Vec::new();
        if legacy {
            waits.extend(self.streams.iter().filter(|(&k, s)| k != stream && s.ctx == ctx && s.blocking && !s.queue.is_empty()).map(|(&k, s)| (k, s.last_seq)));
        } else if blocking {
            let l = self.contexts[&ctx].legacy;
            if !self.streams[&l].queue.is_empty() {
                waits.push((l, self.streams[&l].last_seq));
            }
        }
        for (on, seq) in waits {
            self.push(stream, Op::Wait { stream: on, seq });
        }
        self.push(stream, op);
    }

    fn push(&mut self, stream: usize, op: Op) {
        let seq = self.seq();
        let s = self.streams.get_mut(&stream).expect("enqueue on a known stream");
        s.queue.push_back(Work { seq, op });
        s.last_seq = seq;
    }

    /// Whether `stream` has run all its work up to `seq` (a destroyed stream has).
    pub fn done(&self, stream: usize, seq: u64) -> bool {
        self.streams.get(&stream).and_then(|s| s.queue.front()).is_none_or(|w| w.seq > seq)
    }

    /// Runs `stream`'s work up to `seq`, and what it waits for first.
    pub fn run_until(&mut self, stream: usize, seq: u64) -> Res {
        // Every wait names earlier work than itself, so this recursion ends.
        while !self.done(stream, seq) {
            let ctx = self.streams[&stream].ctx;
            self.usable(ctx)?;
            if let Some(Work { op: Op::Wait { stream: on, seq: upto }, .. }) = self.streams[&stream].queue.front() {
                let (on, upto) = (*on, *upto);
                if !self.done(on, upto) {
                    self.run_until(on, upto)?;
                }
            }
            let work = self.streams.get_mut(&stream).and_then(|s| s.queue.pop_front()).expect("pending work");
            if let Err(e) = self.execute(work.op) {
                self.poison(ctx, e);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs everything `stream` has enqueued.
    pub fn finish(&mut self, stream: usize) -> Res {
        let last = self.streams[&stream].last_seq;
        self.run_until(stream, last)
    }

    /// Runs every stream of `ctx` to the end, the latest-enqueued pending work first.
    pub fn drain(&mut self, ctx: usize) -> Res {
        loop {
            self.usable(ctx)?;
            let next = self.streams.iter().filter(|(_, s)| s.ctx == ctx).filter_map(|(&k, s)| s.queue.front().map(|w| (w.seq, k))).max();
            match next {
                None => return Ok(()),
                Some((seq, stream)) => self.run_until(stream, seq)?,
            }
        }
    }

    /// A fault in `ctx`: the error becomes sticky and its pending work is dropped (a GPU
    /// context is unusable after a kernel fault).
    fn poison(&mut self, ctx: usize, e: CUresult) {
        if let Some(c) = self.contexts.get_mut(&ctx) {
            c.sticky.get_or_insert(e);
        }
        for s in self.streams.values_mut().filter(|s| s.ctx == ctx) {
            s.queue.clear();
        }
    }

    fn execute(&mut self, op: Op) -> Res {
        match op {
            Op::Wait { .. } => Ok(()),
            Op::HtoD { dst, data } => self.sim.write(ptx_sim::DevicePtr(dst), &data).map_err(|e| fault::report_copy("host-to-device copy", &e)),
            Op::DtoD { dst, src, bytes } => {
                let mut buf = vec![0u8; bytes];
                self.sim.read(ptx_sim::DevicePtr(src), &mut buf).map_err(|e| fault::report_copy("device-to-device copy (source)", &e))?;
                self.sim.write(ptx_sim::DevicePtr(dst), &buf).map_err(|e| fault::report_copy("device-to-device copy (destination)", &e))
            }
            Op::Memset { dst, value, size, count } => {
                let unit = &value.to_le_bytes()[..size as usize];
                let data: Vec<u8> = unit.iter().copied().cycle().take(count * size as usize).collect();
                self.sim.write(ptx_sim::DevicePtr(dst), &data).map_err(|e| fault::report_copy("memset", &e))
            }
            Op::Free { ptr } => {
                if let Some(a) = self.allocations.remove(&ptr) {
                    self.allocated_bytes -= a.len;
                }
                self.sim.free(ptx_sim::DevicePtr(ptr)).map_err(|e| fault::report_copy("stream-ordered free", &e))
            }
            Op::Launch(l) => {
                let args: Vec<&[u8]> = l.args.iter().map(Vec::as_slice).collect();
                let opts = crate::work::launch_options();
                match self.sim.launch(&l.module, &l.kernel, &l.config, &args, &opts) {
                    Ok(counters) => {
                        crate::work::record(&counters);
                        Ok(())
                    }
                    Err(e) => Err(fault::report_kernel(&l.kernel, &e)),
                }
            }
        }
    }

    /// Synchronous work on the current context's legacy stream: enqueued, then run.
    pub fn run_now(&mut self, op: Op) -> Res {
        let ctx = self.current()?;
        let legacy = self.contexts[&ctx].legacy;
        self.enqueue(legacy, op);
        self.finish(legacy)
    }
}
