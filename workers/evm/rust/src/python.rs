//! The Python extension module `workers.evm._native` (PyO3; cargo feature `python`).
//!
//! `NativeBlock(...)` is built from plain Python data (`workers/evm/native.py` extracts it from a
//! `workers.evm.block.Block`); `execute(index, view)` runs one transaction against a Python
//! `StateView` and `run(threads)` runs the whole block natively (sequentially, or on `threads`
//! native threads with the GIL released). Results come back as `workers.evm.engine.TxResult`
//! objects exactly as the reference engine builds them (see `workers/evm/state.py` for the
//! location tuples and their values).
//!
//! Bad input never panics: a field that does not convert raises `ValueError` (or `TypeError` for a
//! wrong type) naming the field, an unknown fork raises `MalformedBlock`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyTuple, PyType};

use crate::types::*;
use crate::{evm, exec};

// Python classes and functions, imported once ------------------------------------------------------

static TX_RESULT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CREDIT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TUPLE_NEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MISSING_STATE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MALFORMED_BLOCK: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static EVM_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn tuple_new(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    TUPLE_NEW
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("builtins")?.getattr("tuple")?.getattr("__new__")?.unbind())
        })
        .map(|f| f.bind(py))
}

/// The Python exception of an engine error (a `View` error's original exception is kept by the
/// view and raised instead, see `PyView`).
fn engine_error(py: Python<'_>, error: EngineError) -> PyErr {
    let made = match &error {
        EngineError::MissingState(m) => MISSING_STATE
            .import(py, "workers.evm.errors", "MissingState")
            .and_then(|class| class.call1((m.as_str(),))),
        EngineError::Malformed(m) => {
            // "field: message" when the executor names a field; else the block as a whole.
            let (field, message) = match m.split_once(": ") {
                Some((field, message)) if !field.contains(' ') => (field.to_string(), message.to_string()),
                _ => ("block".to_string(), m.clone()),
            };
            MALFORMED_BLOCK
                .import(py, "workers.evm.errors", "MalformedBlock")
                .and_then(|class| class.call1((field, message)))
        }
        EngineError::View(_) | EngineError::Internal(_) => EVM_ERROR
            .import(py, "workers.evm.errors", "EvmError")
            .and_then(|class| class.call1((error.to_string(),))),
    };
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(import_failed) => import_failed,
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

// Python -> Rust --------------------------------------------------------------------------------

fn value_error(field: &str, message: &str) -> PyErr {
    PyValueError::new_err(format!("{field}: {message}"))
}

/// An int that did not fit the fast path: a `TypeError` if it is no int, a `ValueError` if negative.
fn check_non_negative_int(obj: &Bound<'_, PyAny>, field: &dyn Fn() -> String) -> PyResult<()> {
    if !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!("{}: must be an int, not {}", field(), type_name(obj))));
    }
    if obj.lt(0)? {
        return Err(value_error(&field(), "must not be negative"));
    }
    Ok(())
}

fn u256_of(obj: &Bound<'_, PyAny>, field: &dyn Fn() -> String) -> PyResult<U256> {
    if let Ok(small) = obj.extract::<u128>() {
        return Ok(U256::from(small));
    }
    check_non_negative_int(obj, field)?;
    let py = obj.py();
    let bytes = obj
        .call_method1(intern!(py, "to_bytes"), (32, intern!(py, "big")))
        .map_err(|_| value_error(&field(), "over 2**256-1"))?;
    let bytes = bytes.cast::<PyBytes>().map_err(PyErr::from)?;
    Ok(U256::from_be_slice(bytes.as_bytes()))
}

fn u64_of(obj: &Bound<'_, PyAny>, field: &dyn Fn() -> String) -> PyResult<u64> {
    if let Ok(value) = obj.extract::<u64>() {
        return Ok(value);
    }
    check_non_negative_int(obj, field)?;
    Err(value_error(&field(), "over 2**64-1"))
}

fn optional<'py, T>(
    obj: &Bound<'py, PyAny>,
    convert: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
) -> PyResult<Option<T>> {
    if obj.is_none() {
        Ok(None)
    } else {
        convert(obj).map(Some)
    }
}

fn bytes_of<'a, 'py>(obj: &'a Bound<'py, PyAny>, field: &dyn Fn() -> String) -> PyResult<&'a [u8]> {
    match obj.cast::<PyBytes>() {
        Ok(bytes) => Ok(bytes.as_bytes()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{}: must be bytes, not {}",
            field(),
            type_name(obj)
        ))),
    }
}

fn address_of(obj: &Bound<'_, PyAny>, field: &dyn Fn() -> String) -> PyResult<Address> {
    let bytes = bytes_of(obj, field)?;
    if bytes.len() != 20 {
        return Err(value_error(
            &field(),
            &format!("an address is 20 bytes, got {}", bytes.len()),
        ));
    }
    Ok(Address::from_slice(bytes))
}

fn b256_of(obj: &Bound<'_, PyAny>, field: &dyn Fn() -> String) -> PyResult<B256> {
    let bytes = bytes_of(obj, field)?;
    if bytes.len() != 32 {
        return Err(value_error(&field(), &format!("must be 32 bytes, got {}", bytes.len())));
    }
    Ok(B256::from_slice(bytes))
}

fn bool_of(obj: &Bound<'_, PyAny>, field: &dyn Fn() -> String) -> PyResult<bool> {
    obj.is_truthy().map_err(|e| value_error(&field(), &e.to_string()))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The fields of a tuple (or any sequence) of exactly `n` items.
fn fields<'py>(obj: &Bound<'py, PyAny>, n: usize, field: &dyn Fn() -> String) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let items: Vec<Bound<'py, PyAny>> = match obj.try_iter() {
        Ok(iter) => iter.collect::<PyResult<_>>()?,
        Err(_) => {
            return Err(PyTypeError::new_err(format!(
                "{}: must be a tuple of {n} fields",
                field()
            )))
        }
    };
    if items.len() != n {
        return Err(value_error(
            &field(),
            &format!("must be a tuple of {n} fields, got {}", items.len()),
        ));
    }
    Ok(items)
}

fn items_of<'py>(obj: &Bound<'py, PyAny>, field: &dyn Fn() -> String) -> PyResult<Vec<Bound<'py, PyAny>>> {
    match obj.try_iter() {
        Ok(iter) => iter.collect(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{}: must be a sequence, not {}",
            field(),
            type_name(obj)
        ))),
    }
}

fn dict_of<'a, 'py>(obj: &'a Bound<'py, PyAny>, field: &dyn Fn() -> String) -> PyResult<&'a Bound<'py, PyDict>> {
    obj.cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err(format!("{}: must be a dict, not {}", field(), type_name(obj))))
}

/// `(tx_type, sender, to, nonce, gas_limit, max_fee_per_gas, max_priority_fee_per_gas, value, data,
/// access_list, max_fee_per_blob_gas, blob_hashes, intrinsic_gas, static_error)`.
fn tx_of(obj: &Bound<'_, PyAny>, index: usize) -> PyResult<TxEnv> {
    let at = |name: &str| format!("transactions[{index}].{name}");
    let f = fields(obj, 14, &|| format!("transactions[{index}]"))?;
    let tx_type = u64_of(&f[0], &|| at("type"))?;
    if tx_type > 3 {
        return Err(value_error(&at("type"), &format!("unknown transaction type {tx_type}")));
    }
    let mut access_list = Vec::new();
    for (i, entry) in items_of(&f[9], &|| at("access_list"))?.iter().enumerate() {
        let where_ = || format!("transactions[{index}].access_list[{i}]");
        let pair = fields(entry, 2, &where_)?;
        let address = address_of(&pair[0], &|| format!("{}.address", where_()))?;
        let slots = items_of(&pair[1], &|| format!("{}.slots", where_()))?
            .iter()
            .enumerate()
            .map(|(j, slot)| u256_of(slot, &|| format!("{}.slots[{j}]", where_())))
            .collect::<PyResult<Vec<_>>>()?;
        access_list.push(AccessListItem { address, slots });
    }
    let blob_hashes = items_of(&f[11], &|| at("blob_hashes"))?
        .iter()
        .enumerate()
        .map(|(j, h)| b256_of(h, &|| format!("transactions[{index}].blob_hashes[{j}]")))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(TxEnv {
        tx_type: tx_type as u8,
        sender: address_of(&f[1], &|| at("sender"))?,
        to: optional(&f[2], |o| address_of(o, &|| at("to")))?,
        nonce: u64_of(&f[3], &|| at("nonce"))?,
        gas_limit: u64_of(&f[4], &|| at("gas_limit"))?,
        max_fee_per_gas: u256_of(&f[5], &|| at("max_fee_per_gas"))?,
        max_priority_fee_per_gas: u256_of(&f[6], &|| at("max_priority_fee_per_gas"))?,
        value: u256_of(&f[7], &|| at("value"))?,
        data: Bytes::copy_from_slice(bytes_of(&f[8], &|| at("data"))?),
        access_list,
        max_fee_per_blob_gas: u256_of(&f[10], &|| at("max_fee_per_blob_gas"))?,
        blob_hashes,
        intrinsic_gas: u64_of(&f[12], &|| at("intrinsic_gas"))?,
        static_error: optional(&f[13], |o| {
            o.extract::<String>()
                .map_err(|_| PyTypeError::new_err(format!("{}: must be a str or None", at("static_error"))))
        })?,
    })
}

/// `(address, balance, nonce, exists, code, {slot: value})`.
fn account_of(obj: &Bound<'_, PyAny>, index: usize, codes: &CodeCache) -> PyResult<(Address, PreAccount)> {
    let f = fields(obj, 6, &|| format!("accounts[{index}]"))?;
    let address = address_of(&f[0], &|| format!("accounts[{index}].address"))?;
    let at = |name: &str| format!("accounts[0x{}].{name}", hex(address.as_slice()));
    let storage_dict = dict_of(&f[5], &|| at("storage"))?;
    let mut storage = FastMap::with_capacity_and_hasher(storage_dict.len(), Default::default());
    for (slot, value) in storage_dict.iter() {
        let slot_value = u256_of(&slot, &|| at("storage key"))?;
        let value = u256_of(&value, &|| format!("{}[{slot}]", at("storage")))?;
        storage.insert(slot_value, value);
    }
    let account = PreAccount {
        balance: u256_of(&f[1], &|| at("balance"))?,
        nonce: u64_of(&f[2], &|| at("nonce"))?,
        exists: bool_of(&f[3], &|| at("exists"))?,
        code: codes.get_or_insert(bytes_of(&f[4], &|| at("code"))?),
        storage,
    };
    Ok((address, account))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Rust -> Python --------------------------------------------------------------------------------

fn py_u256<'py>(py: Python<'py>, value: U256) -> PyResult<Bound<'py, PyAny>> {
    let limbs = value.as_limbs();
    if limbs[1] == 0 && limbs[2] == 0 && limbs[3] == 0 {
        return Ok(limbs[0].into_pyobject(py)?.into_any());
    }
    let low = (limbs[1] as u128) << 64 | limbs[0] as u128;
    if limbs[2] == 0 && limbs[3] == 0 {
        return Ok(low.into_pyobject(py)?.into_any());
    }
    // Above 128 bits (hashed slots, topics): two halves joined by two C-level int operations.
    let high = (limbs[3] as u128) << 64 | limbs[2] as u128;
    high.into_pyobject(py)?.lshift(128)?.bitor(low)
}

/// The Python objects of one address, shared by every result of a block: its bytes and the keys
/// `(ACCOUNT, address)` and `(CODE, address)` (tuples and bytes are immutable: sharing is safe).
struct AddressObjects {
    bytes: Py<PyBytes>,
    account_key: Py<PyTuple>,
    code_key: Py<PyTuple>,
}

/// Builds `TxResult`s; caches per-address objects and storage keys (only touched with the GIL
/// held). `run` uses a fresh one per call (a repeated run pays what the first one paid); `execute`
/// keeps one per block, cleared when it grows past `CACHE_LIMIT` entries.
#[derive(Default)]
struct Converter {
    addresses: HashMap<Address, AddressObjects>,
    slots: HashMap<(Address, U256), Py<PyTuple>>,
}

const CACHE_LIMIT: usize = 1 << 20;

impl Converter {
    fn bound(&mut self) {
        if self.addresses.len() + self.slots.len() > CACHE_LIMIT {
            self.addresses.clear();
            self.slots.clear();
        }
    }

    fn address<'py>(&mut self, py: Python<'py>, address: Address) -> PyResult<&AddressObjects> {
        Ok(match self.addresses.entry(address) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let bytes = PyBytes::new(py, address.as_slice());
                let account_key = (0, &bytes).into_pyobject(py)?.unbind();
                let code_key = (1, &bytes).into_pyobject(py)?.unbind();
                entry.insert(AddressObjects {
                    bytes: bytes.unbind(),
                    account_key,
                    code_key,
                })
            }
        })
    }

    fn key<'py>(&mut self, py: Python<'py>, loc: &Loc) -> PyResult<Bound<'py, PyAny>> {
        Ok(match *loc {
            Loc::Account(a) => self.address(py, a)?.account_key.bind(py).clone().into_any(),
            Loc::Code(a) => self.address(py, a)?.code_key.bind(py).clone().into_any(),
            Loc::Storage(a, slot) => {
                if let Some(key) = self.slots.get(&(a, slot)) {
                    return Ok(key.bind(py).clone().into_any());
                }
                let bytes = self.address(py, a)?.bytes.bind(py).clone();
                let key = (2, bytes, py_u256(py, slot)?).into_pyobject(py)?;
                self.slots.insert((a, slot), key.clone().unbind());
                key.into_any()
            }
            Loc::Wipe(a) => {
                let bytes = self.address(py, a)?.bytes.bind(py).clone();
                (3, bytes).into_pyobject(py)?.into_any()
            }
        })
    }

    fn triple<'py>(py: Python<'py>, account: &AccountTriple) -> PyResult<Bound<'py, PyAny>> {
        Ok((py_u256(py, account.balance)?, account.nonce, account.exists)
            .into_pyobject(py)?
            .into_any())
    }

    fn result<'py>(&mut self, py: Python<'py>, result: &TxResult) -> PyResult<Bound<'py, PyAny>> {
        let reads = PyDict::new(py);
        for (loc, value) in &result.reads {
            let value = match value {
                ReadValue::Account(account) => Self::triple(py, account)?,
                ReadValue::Code(hash) => PyBytes::new(py, hash.as_slice()).into_any(),
                ReadValue::Storage(v) => py_u256(py, *v)?,
            };
            reads.set_item(self.key(py, loc)?, value)?;
        }
        let writes = PyDict::new(py);
        for (loc, value) in &result.writes {
            let value = match value {
                WriteValue::Account(account) => Self::triple(py, account)?,
                WriteValue::Credit(amount) => {
                    let credit = CREDIT.import(py, "workers.evm.state", "Credit")?;
                    tuple_new(py)?.call1((credit, (py_u256(py, *amount)?,)))?
                }
                WriteValue::Code(code) => PyBytes::new(py, &code.bytes).into_any(),
                WriteValue::Storage(v) => py_u256(py, *v)?,
                WriteValue::Wipe => PyBool::new(py, true).to_owned().into_any(),
            };
            writes.set_item(self.key(py, loc)?, value)?;
        }
        let mut logs = Vec::with_capacity(result.logs.len());
        for log in &result.logs {
            let address = self.address(py, log.address)?.bytes.bind(py).clone();
            let topics = PyTuple::new(
                py,
                log.topics
                    .iter()
                    .map(|t| py_u256(py, U256::from_be_bytes(t.0)))
                    .collect::<PyResult<Vec<_>>>()?,
            )?;
            logs.push((address, topics, PyBytes::new(py, &log.data)).into_pyobject(py)?);
        }
        let logs = PyTuple::new(py, logs)?;
        let fields = (
            result.index,
            result.valid,
            result.success,
            result.gas_used,
            logs,
            reads,
            writes,
            result.error.as_deref(),
        );
        let class = TX_RESULT.import(py, "workers.evm.engine", "TxResult")?;
        tuple_new(py)?.call1((class, fields.into_pyobject(py)?))
    }
}

// The Python view -------------------------------------------------------------------------------

/// A `View` over a Python `StateView` (`view.read(key)`). Called on the executor's thread: it
/// attaches to the interpreter for each read. The first Python exception is kept, to be raised
/// as itself once execution has returned.
struct PyView {
    view: Py<PyAny>,
    block: Arc<NativeBlock>,
    error: Mutex<Option<PyErr>>,
}

impl PyView {
    fn read<T>(
        &self,
        key: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>>,
        convert: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
    ) -> Result<T, EngineError> {
        Python::attach(|py| {
            let outcome = key(py).and_then(|key| {
                let value = self.view.bind(py).call_method1(intern!(py, "read"), (key,))?;
                convert(&value)
            });
            outcome.map_err(|err| {
                let message = err.to_string();
                let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() {
                    *slot = Some(err);
                }
                EngineError::View(message)
            })
        })
    }

    fn take_error(&self) -> Option<PyErr> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl View for PyView {
    fn account(&self, address: Address) -> Result<AccountTriple, EngineError> {
        self.read(
            |py| (0, PyBytes::new(py, address.as_slice())).into_pyobject(py),
            |value| {
                let what = || format!("the view's value of account 0x{}", hex(address.as_slice()));
                let f = fields(value, 3, &what)?;
                Ok(AccountTriple {
                    balance: u256_of(&f[0], &|| format!("{} (balance)", what()))?,
                    nonce: u64_of(&f[1], &|| format!("{} (nonce)", what()))?,
                    exists: bool_of(&f[2], &what)?,
                })
            },
        )
    }

    fn code(&self, address: Address) -> Result<Arc<Code>, EngineError> {
        self.read(
            |py| (1, PyBytes::new(py, address.as_slice())).into_pyobject(py),
            |value| {
                let bytes = bytes_of(value, &|| format!("the view's code of 0x{}", hex(address.as_slice())))?;
                // Mostly the pre-state's code: comparing is cheaper than hashing.
                if let Some(account) = self.block.pre.accounts.get(&address) {
                    if account.code.bytes.as_ref() == bytes {
                        return Ok(account.code.clone());
                    }
                }
                Ok(self.block.codes.get_or_insert(bytes))
            },
        )
    }

    fn storage(&self, address: Address, slot: U256) -> Result<U256, EngineError> {
        self.read(
            |py| (2, PyBytes::new(py, address.as_slice()), py_u256(py, slot)?).into_pyobject(py),
            |value| {
                u256_of(value, &|| {
                    format!("the view's value of slot {slot:#x} of 0x{}", hex(address.as_slice()))
                })
            },
        )
    }
}

// The per-transaction path's big-stack thread ------------------------------------------------------

type Job = Box<dyn FnOnce() + Send + 'static>;

/// One long-lived thread with an `exec::STACK_SIZE` stack runs every `execute` of this process:
/// starting a thread per transaction would cost more than executing most transactions. Restarted
/// in a forked child (whose copy of the channel has no thread behind it) and if it ever stops.
///
/// Handing a job to a sleeping thread and its answer back costs tens of microseconds of wake-up
/// latency on a virtual machine, more than a simple transaction takes: both sides poll for up to
/// `SPIN` before they sleep (transactions come one after another when a shard runs a batch).
struct BigStackThread {
    pid: u32,
    jobs: mpsc::Sender<Job>,
}

static BIG_STACK_THREAD: Mutex<Option<BigStackThread>> = Mutex::new(None);

const SPIN: Duration = Duration::from_micros(200);

fn start_big_stack_thread() -> Result<BigStackThread, EngineError> {
    let (jobs, queue) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("evm-execute".into())
        .stack_size(exec::STACK_SIZE)
        .spawn(move || {
            // One Python thread state for the thread's whole life, holding the GIL only while a job
            // runs: attaching per job would create and destroy a thread state each time. (Jobs that
            // call `Python::attach` then only count a nested attachment.)
            // SAFETY: the interpreter is initialised (this thread is started from a Python call);
            // every SaveThread follows the Ensure or a RestoreThread of this thread's own state.
            let state = unsafe {
                pyo3::ffi::PyGILState_Ensure();
                pyo3::ffi::PyEval_SaveThread()
            };
            while let Some(job) = receive(&queue) {
                unsafe { pyo3::ffi::PyEval_RestoreThread(state) };
                let _ = catch_unwind(AssertUnwindSafe(job)); // jobs catch their own panics; belt and braces
                unsafe { pyo3::ffi::PyEval_SaveThread() };
            }
        })
        .map_err(|error| EngineError::Internal(format!("cannot start the execution thread: {error}")))?;
    Ok(BigStackThread {
        pid: std::process::id(),
        jobs,
    })
}

/// The next message: polled for up to `SPIN`, then waited for (None: every sender is gone).
fn receive<T>(channel: &mpsc::Receiver<T>) -> Option<T> {
    let deadline = Instant::now() + SPIN;
    let mut polls = 0u32;
    loop {
        match channel.try_recv() {
            Ok(value) => return Some(value),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        polls += 1;
        if polls % 64 == 0 {
            if Instant::now() >= deadline {
                return channel.recv().ok();
            }
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Run `f` on the big-stack thread, which holds the GIL while `f` runs, and wait for its value
/// (the caller must have released the GIL).
fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, EngineError> {
    let (reply, answer) = mpsc::sync_channel::<T>(1);
    let mut job: Job = Box::new(move || {
        let _ = reply.send(f());
    });
    for _ in 0..2 {
        let jobs = {
            let mut thread = BIG_STACK_THREAD.lock().unwrap_or_else(|e| e.into_inner());
            if thread.as_ref().is_none_or(|t| t.pid != std::process::id()) {
                *thread = Some(start_big_stack_thread()?);
            }
            thread.as_ref().map(|t| t.jobs.clone()).expect("just started")
        };
        match jobs.send(job) {
            Ok(()) => {
                return receive(&answer)
                    .ok_or_else(|| EngineError::Internal("the execution thread stopped during a transaction".into()))
            }
            Err(mpsc::SendError(returned)) => {
                job = returned; // the thread is gone: start another one
                *BIG_STACK_THREAD.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
    }
    Err(EngineError::Internal("the execution thread cannot be started".into()))
}

// The class -------------------------------------------------------------------------------------

/// A block ready for native execution (see the module's docstring in `workers/evm/native.py`).
#[pyclass(name = "NativeBlock", module = "workers.evm._native", frozen)]
struct PyNativeBlock {
    block: Arc<NativeBlock>,
    converter: Mutex<Converter>,
}

#[pymethods]
impl PyNativeBlock {
    /// Keyword arguments only. ``transactions``: tuples ``(type, sender, to, nonce, gas_limit,
    /// max_fee_per_gas, max_priority_fee_per_gas, value, data, access_list, max_fee_per_blob_gas,
    /// blob_hashes, intrinsic_gas, static_error)`` with ``access_list`` as ``[(address, [slot, ...]), ...]`` (gas price in both
    /// fee fields for types 0 and 1); ``accounts``: tuples ``(address, balance, nonce, exists,
    /// code, {slot: value})``; ``block_hashes``: ``{number: hash}``.
    #[new]
    #[pyo3(signature = (*, fork, number, coinbase, timestamp, difficulty, mix_hash, gas_limit, base_fee, excess_blob_gas, chain_id, block_hashes, transactions, accounts))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        fork: &str,
        number: &Bound<'_, PyAny>,
        coinbase: &Bound<'_, PyAny>,
        timestamp: &Bound<'_, PyAny>,
        difficulty: &Bound<'_, PyAny>,
        mix_hash: &Bound<'_, PyAny>,
        gas_limit: &Bound<'_, PyAny>,
        base_fee: &Bound<'_, PyAny>,
        excess_blob_gas: &Bound<'_, PyAny>,
        chain_id: &Bound<'_, PyAny>,
        block_hashes: &Bound<'_, PyAny>,
        transactions: &Bound<'_, PyAny>,
        accounts: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let spec = spec_of_fork(fork)
            .map_err(|_| engine_error(py, EngineError::Malformed(format!("block.fork: unknown fork {fork:?}"))))?;
        let name = |n: &'static str| move || format!("block.{n}");
        let mut hashes = HashMap::new();
        for (key, value) in dict_of(block_hashes, &name("block_hashes"))?.iter() {
            let ancestor = u64_of(&key, &|| "block_hashes key".to_string())?;
            hashes.insert(ancestor, b256_of(&value, &|| format!("block_hashes[{ancestor}]"))?);
        }
        let env = BlockEnv {
            spec,
            number: u64_of(number, &name("number"))?,
            coinbase: address_of(coinbase, &name("coinbase"))?,
            timestamp: u64_of(timestamp, &name("timestamp"))?,
            difficulty: u256_of(difficulty, &name("difficulty"))?,
            mix_hash: b256_of(mix_hash, &name("mix_hash"))?,
            gas_limit: u64_of(gas_limit, &name("gas_limit"))?,
            base_fee: optional(base_fee, |o| u256_of(o, &name("base_fee")))?,
            excess_blob_gas: optional(excess_blob_gas, |o| u64_of(o, &name("excess_blob_gas")))?,
            chain_id: u64_of(chain_id, &name("chain_id"))?,
            block_hashes: hashes,
        };
        let txs = items_of(transactions, &|| "transactions".to_string())?
            .iter()
            .enumerate()
            .map(|(i, tx)| tx_of(tx, i))
            .collect::<PyResult<Vec<_>>>()?;
        let codes = CodeCache::default();
        let mut pre = PreState::default();
        for (i, account) in items_of(accounts, &|| "accounts".to_string())?.iter().enumerate() {
            let (address, account) = account_of(account, i, &codes)?;
            pre.accounts.insert(address, account);
        }
        Ok(PyNativeBlock {
            block: Arc::new(NativeBlock { env, txs, pre, codes }),
            converter: Mutex::new(Converter::default()),
        })
    }

    fn __len__(&self) -> usize {
        self.block.txs.len()
    }

    /// The block's number.
    #[getter]
    fn number(&self) -> u64 {
        self.block.env.number
    }

    /// Execute transaction ``index`` against ``view`` (a ``StateView``: ``view.read(key)``), on a
    /// big-stack thread; the view is called back with the GIL held. Returns a ``TxResult``; an
    /// exception raised by the view propagates as itself.
    fn execute(&self, py: Python<'_>, index: usize, view: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let count = self.block.txs.len();
        if index >= count {
            return Err(PyIndexError::new_err(format!(
                "transaction {index} of a block of {count}"
            )));
        }
        let view = Arc::new(PyView {
            view,
            block: self.block.clone(),
            error: Mutex::new(None),
        });
        let job_view = view.clone();
        let outcome = py.detach(move || {
            on_big_stack(move || {
                // Attached once for the whole execution: the view's reads then nest cheaply.
                Python::attach(|_| {
                    catch_unwind(AssertUnwindSafe(|| evm::execute_tx(&job_view.block, index, &*job_view)))
                        .unwrap_or_else(|panic| Err(EngineError::Internal(panic_message(panic))))
                })
            })
        });
        if let Some(err) = view.take_error() {
            return Err(err);
        }
        let result = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(error)) | Err(error) => return Err(engine_error(py, error)),
        };
        // Never wait for the cache with the GIL held (another thread may hold it while it imports
        // a class): a busy cache means a one-off converter.
        match self.converter.try_lock() {
            Ok(mut converter) => {
                converter.bound();
                Ok(converter.result(py, &result)?.unbind())
            }
            Err(_) => Ok(Converter::default().result(py, &result)?.unbind()),
        }
    }

    /// Execute the whole block natively with the GIL released: sequentially when ``threads`` <= 1,
    /// else in parallel on ``threads`` native threads. Returns ``(results, stats)``: the
    /// ``TxResult``s in block order and a dict of the executor's statistics.
    #[pyo3(signature = (threads = 1))]
    fn run(&self, py: Python<'_>, threads: usize) -> PyResult<(Py<PyList>, Py<PyDict>)> {
        let block = self.block.clone();
        let started = std::time::Instant::now();
        let outcome = py.detach(move || {
            catch_unwind(AssertUnwindSafe(|| {
                if threads <= 1 {
                    exec::execute_sequential(&block).map(|results| {
                        let n = results.len();
                        (results, None, n)
                    })
                } else {
                    let (results, stats) = exec::execute_parallel(&block, threads)?;
                    let n = results.len();
                    Ok((results, Some(stats), n))
                }
            }))
        });
        let elapsed = started.elapsed().as_secs_f64();
        let (results, stats, count) = match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => return Err(engine_error(py, error)),
            Err(panic) => return Err(engine_error(py, EngineError::Internal(panic_message(panic)))),
        };
        let converted_started = std::time::Instant::now();
        let mut converter = Converter::default();
        let list = PyList::empty(py);
        for result in &results {
            list.append(converter.result(py, result)?)?;
        }
        py.detach(move || drop(results)); // freeing thousands of read and write sets needs no GIL
        let info = PyDict::new(py);
        info.set_item("transactions", count)?;
        info.set_item("threads", threads.max(1))?;
        info.set_item("elapsed_s", elapsed)?;
        info.set_item("convert_s", converted_started.elapsed().as_secs_f64())?;
        match stats {
            None => {
                info.set_item("executions", count)?;
                info.set_item("rounds", if count > 0 { 1 } else { 0 })?;
            }
            Some(stats) => stats_into(&info, &stats)?,
        }
        Ok((list.unbind(), info.unbind()))
    }
}

/// The parallel executor's statistics (`exec::ParallelStats`, field for field).
fn stats_into(info: &Bound<'_, PyDict>, stats: &exec::ParallelStats) -> PyResult<()> {
    info.set_item("executions", stats.executions)?;
    info.set_item("rounds", 1)?; // one pass: speculation and the commit wave run together, without rounds
    info.set_item("threads", stats.threads)?;
    info.set_item("validations", stats.validations)?;
    info.set_item("aborts", stats.aborts)?;
    info.set_item("executor_s", stats.elapsed_s)?;
    Ok(())
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNativeBlock>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
