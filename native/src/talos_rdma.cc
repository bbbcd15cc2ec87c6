// Talos' binding to rdma-core (libibverbs + librdmacm), small and batch-oriented.
//
// Objects and lifetimes. Every verbs object is a C++ resource held by std::shared_ptr; a child
// holds its parents (an MR and a QP hold their PD, a PD holds its device context, a QP holds its
// CQs), so the parent's verbs object is destroyed only after the last child is gone, whatever
// order JS closes or collects them in. `close()` on a JS object drops its own hold (idempotent);
// the garbage collector does the same for objects never closed.
//
// Memory regions are allocated here (posix_memalign, page aligned, zeroed) and shown to JS as an
// external ArrayBuffer. The block is freed only when both the registration is gone (deregistered
// or closed) and the ArrayBuffer has been collected: JS can never see freed memory, and the HCA
// never writes into freed memory (the fabric keeps an MR alive while work on it is in flight, and a
// destroyed QP's outstanding work is discarded by the provider). `deregister()` fences: the rkey
// dies at once (a remote write with it fails with IBV_WC_REM_ACCESS_ERR), the bytes stay readable.
// `reregister()` registers the same memory again (the new MR is registered before the old one is
// dropped, so the rkey is always a new one).
//
// Completions: each CompletionQueue has its own completion channel, its fd non-blocking and
// watched with uv_poll on the Node event loop. On readable: take and ack the event, re-arm
// (ibv_req_notify_cq) and only then drain ibv_poll_cq until empty (no lost wake-up), and hand
// the completions to the JS callback as one array.
//
// Connection management: RC QPs are moved INIT→RTR→RTS either with attributes exchanged out of
// band (QueuePair.connect) or through rdma_cm (CmChannel / CmId: listen, connect, accept, reject
// with private data, events delivered through uv_poll on the event channel fd).
//
// Errors: every failing verbs/rdma_cm call throws a JS Error whose `code` is the errno name
// (ENODEV, EINVAL...), `syscall` the verbs call; completion errors carry the ibv_wc_status name
// (IBV_WC_REM_ACCESS_ERR...). ibv_fork_init() runs when the module loads, before any registration.
#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <string>
#include <vector>

namespace {

// ─────────────────────────────── errors ───────────────────────────────

std::string ErrnoName(int err) {
  const char *name = strerrorname_np(err);
  return name != nullptr ? std::string(name) : "E" + std::to_string(err);
}

Napi::Error VerbsError(Napi::Env env, const std::string &call, int err, const std::string &detail = "") {
  std::string message = call + ": " + ErrnoName(err) + " (" + strerror(err) + ")";
  if (!detail.empty()) message += ": " + detail;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, call));
  return error;
}

[[noreturn]] void ThrowVerbs(Napi::Env env, const std::string &call, int err, const std::string &detail = "") {
  throw VerbsError(env, call, err, detail);
}

[[noreturn]] void ThrowClosed(Napi::Env env, const char *what) {
  Napi::Error error = Napi::Error::New(env, std::string(what) + " is closed");
  error.Set("code", Napi::String::New(env, "ECLOSED"));
  throw error;
}

const char *WcStatusName(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS: return "IBV_WC_SUCCESS";
    case IBV_WC_LOC_LEN_ERR: return "IBV_WC_LOC_LEN_ERR";
    case IBV_WC_LOC_QP_OP_ERR: return "IBV_WC_LOC_QP_OP_ERR";
    case IBV_WC_LOC_EEC_OP_ERR: return "IBV_WC_LOC_EEC_OP_ERR";
    case IBV_WC_LOC_PROT_ERR: return "IBV_WC_LOC_PROT_ERR";
    case IBV_WC_WR_FLUSH_ERR: return "IBV_WC_WR_FLUSH_ERR";
    case IBV_WC_MW_BIND_ERR: return "IBV_WC_MW_BIND_ERR";
    case IBV_WC_BAD_RESP_ERR: return "IBV_WC_BAD_RESP_ERR";
    case IBV_WC_LOC_ACCESS_ERR: return "IBV_WC_LOC_ACCESS_ERR";
    case IBV_WC_REM_INV_REQ_ERR: return "IBV_WC_REM_INV_REQ_ERR";
    case IBV_WC_REM_ACCESS_ERR: return "IBV_WC_REM_ACCESS_ERR";
    case IBV_WC_REM_OP_ERR: return "IBV_WC_REM_OP_ERR";
    case IBV_WC_RETRY_EXC_ERR: return "IBV_WC_RETRY_EXC_ERR";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "IBV_WC_RNR_RETRY_EXC_ERR";
    case IBV_WC_LOC_RDD_VIOL_ERR: return "IBV_WC_LOC_RDD_VIOL_ERR";
    case IBV_WC_REM_INV_RD_REQ_ERR: return "IBV_WC_REM_INV_RD_REQ_ERR";
    case IBV_WC_REM_ABORT_ERR: return "IBV_WC_REM_ABORT_ERR";
    case IBV_WC_INV_EECN_ERR: return "IBV_WC_INV_EECN_ERR";
    case IBV_WC_INV_EEC_STATE_ERR: return "IBV_WC_INV_EEC_STATE_ERR";
    case IBV_WC_FATAL_ERR: return "IBV_WC_FATAL_ERR";
    case IBV_WC_RESP_TIMEOUT_ERR: return "IBV_WC_RESP_TIMEOUT_ERR";
    case IBV_WC_GENERAL_ERR: return "IBV_WC_GENERAL_ERR";
    default: return "IBV_WC_UNKNOWN";
  }
}

const char *WcOpcodeName(ibv_wc_opcode opcode) {
  switch (opcode) {
    case IBV_WC_SEND: return "SEND";
    case IBV_WC_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WC_RDMA_READ: return "RDMA_READ";
    case IBV_WC_RECV: return "RECV";
    case IBV_WC_RECV_RDMA_WITH_IMM: return "RECV_RDMA_WITH_IMM";
    default: return "OTHER";
  }
}

const char *QpStateName(ibv_qp_state state) {
  switch (state) {
    case IBV_QPS_RESET: return "RESET";
    case IBV_QPS_INIT: return "INIT";
    case IBV_QPS_RTR: return "RTR";
    case IBV_QPS_RTS: return "RTS";
    case IBV_QPS_SQD: return "SQD";
    case IBV_QPS_SQE: return "SQE";
    case IBV_QPS_ERR: return "ERR";
    default: return "UNKNOWN";
  }
}

uint32_t U32(const Napi::Object &o, const char *key, uint32_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : fallback;
}

uint64_t U64(Napi::Env env, const Napi::Object &o, const char *key) {
  Napi::Value v = o.Get(key);
  if (v.IsBigInt()) {
    bool lossless = true;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return static_cast<uint64_t>(v.As<Napi::Number>().DoubleValue());
  throw Napi::TypeError::New(env, std::string(key) + " must be a bigint or a number");
}

// ─────────────────────────────── resources ───────────────────────────────

struct DeviceRes {
  ibv_context *ctx = nullptr;
  std::string name;
  // Set when the context is librdmacm's (rdma_get_devices): PDs and CQs for QPs on rdma_cm ids must
  // be on that context. The list holds librdmacm's reference to the device until freed.
  ibv_context **cmList = nullptr;
  ~DeviceRes() {
    if (cmList != nullptr) rdma_free_devices(cmList);
    else if (ctx != nullptr) ibv_close_device(ctx);
  }
};

struct PdRes {
  std::shared_ptr<DeviceRes> device;
  ibv_pd *pd = nullptr;
  ~PdRes() {
    if (pd != nullptr) ibv_dealloc_pd(pd);
  }
};

struct MemBlock {
  void *ptr = nullptr;
  size_t bytes = 0;
  ~MemBlock() { free(ptr); }
};

struct MrRes {
  std::shared_ptr<PdRes> pd;
  std::shared_ptr<MemBlock> mem;
  ibv_mr *mr = nullptr;
  int access = 0;
  ~MrRes() {
    if (mr != nullptr) ibv_dereg_mr(mr);
  }
};

struct CqRes {
  std::shared_ptr<DeviceRes> device;
  ibv_comp_channel *channel = nullptr;
  ibv_cq *cq = nullptr;
  ~CqRes() {
    if (cq != nullptr) ibv_destroy_cq(cq);
    if (channel != nullptr) ibv_destroy_comp_channel(channel);
  }
};

struct QpRes {
  std::shared_ptr<PdRes> pd;
  std::shared_ptr<CqRes> sendCq, recvCq;
  ibv_qp *qp = nullptr;
  rdma_cm_id *cmId = nullptr;  // set when the QP was created on an rdma_cm id (destroyed with it)
  ~QpRes() {
    if (cmId != nullptr) rdma_destroy_qp(cmId);
    else if (qp != nullptr) ibv_destroy_qp(qp);
  }
};

// ─────────────────────────────── module state ───────────────────────────────

struct AddonData {
  Napi::FunctionReference device, pd, mr, cq, qp, cmChannel, cmId;
  int forkInit = 0;
};

// ─────────────────────────────── Device ───────────────────────────────

class Device : public Napi::ObjectWrap<Device> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Device",
                       {
                           InstanceAccessor<&Device::Name>("name"),
                           InstanceMethod<&Device::QueryGid>("queryGid"),
                           InstanceMethod<&Device::QueryPort>("queryPort"),
                           InstanceMethod<&Device::Close>("close"),
                       });
  }

  explicit Device(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Device>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "Device(name: string)");
    std::string name = info[0].As<Napi::String>();
    if (info.Length() > 1 && info[1].ToBoolean()) {
      OpenThroughRdmaCm(env, name);
      return;
    }
    int n = 0;
    ibv_device **list = ibv_get_device_list(&n);
    std::string available;
    ibv_context *ctx = nullptr;
    int openErr = 0;
    bool found = false;
    for (int i = 0; list != nullptr && i < n; i++) {
      const char *devName = ibv_get_device_name(list[i]);
      if (!available.empty()) available += ", ";
      available += devName;
      if (name == devName) {
        found = true;
        ctx = ibv_open_device(list[i]);
        if (ctx == nullptr) openErr = errno != 0 ? errno : EIO;
      }
    }
    if (list != nullptr) ibv_free_device_list(list);
    if (!found)
      ThrowVerbs(env, "ibv_open_device", ENODEV,
                 "no RDMA device named '" + name + "' (available: " + (available.empty() ? "none" : available) + ")");
    if (ctx == nullptr) ThrowVerbs(env, "ibv_open_device", openErr, name);
    res_ = std::make_shared<DeviceRes>();
    res_->ctx = ctx;
    res_->name = name;
  }

  std::shared_ptr<DeviceRes> Res(Napi::Env env) {
    if (!res_) ThrowClosed(env, "device");
    return res_;
  }

 private:
  // new Device(name, true): librdmacm's context for the device (for QPs created on rdma_cm ids).
  void OpenThroughRdmaCm(Napi::Env env, const std::string &name) {
    int n = 0;
    ibv_context **list = rdma_get_devices(&n);
    if (list == nullptr) ThrowVerbs(env, "rdma_get_devices", errno != 0 ? errno : ENODEV);
    std::string available;
    for (int i = 0; i < n; i++) {
      const char *devName = ibv_get_device_name(list[i]->device);
      if (name == devName) {
        res_ = std::make_shared<DeviceRes>();
        res_->ctx = list[i];
        res_->name = name;
        res_->cmList = list;
        return;
      }
      if (!available.empty()) available += ", ";
      available += devName;
    }
    rdma_free_devices(list);
    ThrowVerbs(env, "ibv_open_device", ENODEV,
               "no RDMA device named '" + name + "' (available: " + (available.empty() ? "none" : available) + ")");
  }

  Napi::Value Name(const Napi::CallbackInfo &info) {
    return Napi::String::New(info.Env(), res_ ? res_->name : "");
  }

  Napi::Value QueryGid(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto res = Res(env);
    uint8_t port = static_cast<uint8_t>(info[0].As<Napi::Number>().Uint32Value());
    int index = info[1].As<Napi::Number>().Int32Value();
    ibv_gid gid;
    if (ibv_query_gid(res->ctx, port, index, &gid) != 0) ThrowVerbs(env, "ibv_query_gid", errno != 0 ? errno : EINVAL);
    return Napi::Buffer<uint8_t>::Copy(env, gid.raw, sizeof(gid.raw));
  }

  Napi::Value QueryPort(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto res = Res(env);
    uint8_t port = static_cast<uint8_t>(info[0].As<Napi::Number>().Uint32Value());
    ibv_port_attr attr;
    int rc = ibv_query_port(res->ctx, port, &attr);
    if (rc != 0) ThrowVerbs(env, "ibv_query_port", rc);
    Napi::Object out = Napi::Object::New(env);
    out.Set("state", Napi::String::New(env, ibv_port_state_str(attr.state)));
    out.Set("activeMtu", Napi::Number::New(env, 128 << attr.active_mtu));
    out.Set("activeMtuEnum", Napi::Number::New(env, attr.active_mtu));
    out.Set("gidTableLength", Napi::Number::New(env, attr.gid_tbl_len));
    out.Set("maxMessageBytes", Napi::Number::New(env, attr.max_msg_sz));
    return out;
  }

  void Close(const Napi::CallbackInfo &) { res_.reset(); }

  std::shared_ptr<DeviceRes> res_;
};

// ─────────────────────────────── ProtectionDomain ───────────────────────────────

class ProtectionDomain : public Napi::ObjectWrap<ProtectionDomain> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ProtectionDomain", {InstanceMethod<&ProtectionDomain::Close>("close")});
  }

  explicit ProtectionDomain(const Napi::CallbackInfo &info) : Napi::ObjectWrap<ProtectionDomain>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "ProtectionDomain(device)");
    auto device = Napi::ObjectWrap<Device>::Unwrap(info[0].As<Napi::Object>())->Res(env);
    ibv_pd *pd = ibv_alloc_pd(device->ctx);
    if (pd == nullptr) ThrowVerbs(env, "ibv_alloc_pd", errno != 0 ? errno : ENOMEM);
    res_ = std::make_shared<PdRes>();
    res_->device = device;
    res_->pd = pd;
  }

  std::shared_ptr<PdRes> Res(Napi::Env env) {
    if (!res_) ThrowClosed(env, "protection domain");
    return res_;
  }

 private:
  void Close(const Napi::CallbackInfo &) { res_.reset(); }
  std::shared_ptr<PdRes> res_;
};

// ─────────────────────────────── MemoryRegion ───────────────────────────────

class MemoryRegion : public Napi::ObjectWrap<MemoryRegion> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "MemoryRegion",
                       {
                           InstanceAccessor<&MemoryRegion::Buffer>("buffer"),
                           InstanceAccessor<&MemoryRegion::Address>("address"),
                           InstanceAccessor<&MemoryRegion::Rkey>("rkey"),
                           InstanceAccessor<&MemoryRegion::Lkey>("lkey"),
                           InstanceAccessor<&MemoryRegion::Length>("length"),
                           InstanceAccessor<&MemoryRegion::Registered>("registered"),
                           InstanceMethod<&MemoryRegion::Deregister>("deregister"),
                           InstanceMethod<&MemoryRegion::Reregister>("reregister"),
                           InstanceMethod<&MemoryRegion::Close>("close"),
                       });
  }

  // MemoryRegion(pd, bytes, remoteWrite = true)
  explicit MemoryRegion(const Napi::CallbackInfo &info) : Napi::ObjectWrap<MemoryRegion>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsNumber())
      throw Napi::TypeError::New(env, "MemoryRegion(pd, bytes[, remoteWrite])");
    pd_ = Napi::ObjectWrap<ProtectionDomain>::Unwrap(info[0].As<Napi::Object>())->Res(env);
    double bytes = info[1].As<Napi::Number>().DoubleValue();
    if (!(bytes >= 1) || bytes > 1ULL << 40) ThrowVerbs(env, "posix_memalign", EINVAL, "bad region size");
    bool remoteWrite = info.Length() < 3 || info[2].ToBoolean();
    access_ = IBV_ACCESS_LOCAL_WRITE | (remoteWrite ? IBV_ACCESS_REMOTE_WRITE : 0);
    mem_ = std::make_shared<MemBlock>();
    size_t size = static_cast<size_t>(bytes);
    int rc = posix_memalign(&mem_->ptr, 4096, size);
    if (rc != 0) ThrowVerbs(env, "posix_memalign", rc);
    memset(mem_->ptr, 0, size);
    mem_->bytes = size;
    mr_ = Register(env);
    // The ArrayBuffer holds the block too: it is freed when both the ArrayBuffer and the MR are gone.
    auto *hold = new std::shared_ptr<MemBlock>(mem_);
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(
        env, mem_->ptr, size, [](Napi::Env, void *, std::shared_ptr<MemBlock> *h) { delete h; }, hold);
    buffer_ = Napi::Persistent(buffer);
  }

  std::shared_ptr<MrRes> Res(Napi::Env env) {
    if (!mr_) ThrowVerbs(env, "ibv_post", EINVAL, "memory region is not registered (closed or deregistered)");
    return mr_;
  }

 private:
  std::shared_ptr<MrRes> Register(Napi::Env env) {
    if (!pd_) ThrowClosed(env, "memory region");
    ibv_mr *mr = ibv_reg_mr(pd_->pd, mem_->ptr, mem_->bytes, access_);
    if (mr == nullptr) ThrowVerbs(env, "ibv_reg_mr", errno != 0 ? errno : ENOMEM);
    auto res = std::make_shared<MrRes>();
    res->pd = pd_;
    res->mem = mem_;
    res->mr = mr;
    res->access = access_;
    return res;
  }

  Napi::Value Buffer(const Napi::CallbackInfo &) { return buffer_.Value(); }
  Napi::Value Address(const Napi::CallbackInfo &info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(mem_->ptr)));
  }
  Napi::Value Rkey(const Napi::CallbackInfo &info) {
    return mr_ ? Napi::Number::New(info.Env(), mr_->mr->rkey) : info.Env().Undefined();
  }
  Napi::Value Lkey(const Napi::CallbackInfo &info) {
    return mr_ ? Napi::Number::New(info.Env(), mr_->mr->lkey) : info.Env().Undefined();
  }
  Napi::Value Length(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), mem_->bytes); }
  Napi::Value Registered(const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), !!mr_); }

  // The rkey dies (fencing); the memory stays readable. Idempotent.
  void Deregister(const Napi::CallbackInfo &) { mr_.reset(); }

  // A new registration of the same memory (new rkey); the old one is dropped after.
  Napi::Value Reregister(const Napi::CallbackInfo &info) {
    auto fresh = Register(info.Env());
    mr_ = fresh;
    return Napi::Number::New(info.Env(), mr_->mr->rkey);
  }

  void Close(const Napi::CallbackInfo &) {
    mr_.reset();
    pd_.reset();
  }

  std::shared_ptr<PdRes> pd_;
  std::shared_ptr<MemBlock> mem_;
  std::shared_ptr<MrRes> mr_;
  int access_ = 0;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

// Stops watching an fd and frees its uv_poll_t once libuv closed it (idempotent: nulls `poll`).
static void StopPoll(uv_poll_t *&poll) {
  if (poll == nullptr) return;
  uv_poll_stop(poll);
  uv_close(reinterpret_cast<uv_handle_t *>(poll), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
  poll = nullptr;
}

// ─────────────────────────────── CompletionQueue ───────────────────────────────

class CompletionQueue : public Napi::ObjectWrap<CompletionQueue> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CompletionQueue", {InstanceMethod<&CompletionQueue::Close>("close")});
  }

  // CompletionQueue(device, depth, onCompletions(batch))
  explicit CompletionQueue(const Napi::CallbackInfo &info) : Napi::ObjectWrap<CompletionQueue>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsNumber() || !info[2].IsFunction())
      throw Napi::TypeError::New(env, "CompletionQueue(device, depth, onCompletions)");
    auto device = Napi::ObjectWrap<Device>::Unwrap(info[0].As<Napi::Object>())->Res(env);
    int depth = info[1].As<Napi::Number>().Int32Value();
    auto res = std::make_shared<CqRes>();
    res->device = device;
    res->channel = ibv_create_comp_channel(device->ctx);
    if (res->channel == nullptr) ThrowVerbs(env, "ibv_create_comp_channel", errno != 0 ? errno : ENOMEM);
    int flags = fcntl(res->channel->fd, F_GETFL);
    if (fcntl(res->channel->fd, F_SETFL, flags | O_NONBLOCK) != 0) ThrowVerbs(env, "fcntl", errno);
    res->cq = ibv_create_cq(device->ctx, depth, nullptr, res->channel, 0);
    if (res->cq == nullptr) ThrowVerbs(env, "ibv_create_cq", errno != 0 ? errno : ENOMEM);
    int rc = ibv_req_notify_cq(res->cq, 0);
    if (rc != 0) ThrowVerbs(env, "ibv_req_notify_cq", rc);
    callback_ = Napi::Persistent(info[2].As<Napi::Function>());
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    uv_poll_init(loop, poll_, res->channel->fd);
    uv_poll_start(poll_, UV_READABLE, OnReadable);
    res_ = res;
    env_ = env;
    Ref();  // alive while polling, even if JS drops it without close()
  }

  ~CompletionQueue() override { StopPolling(); }

  std::shared_ptr<CqRes> Res(Napi::Env env) {
    if (!res_) ThrowClosed(env, "completion queue");
    return res_;
  }

 private:
  static void OnReadable(uv_poll_t *handle, int status, int events) {
    static_cast<CompletionQueue *>(handle->data)->Drain();
  }

  void Drain() {
    if (!res_) return;
    auto res = res_;
    ibv_cq *evCq = nullptr;
    void *evCtx = nullptr;
    unsigned events = 0;
    while (ibv_get_cq_event(res->channel, &evCq, &evCtx) == 0) events++;
    if (events > 0) ibv_ack_cq_events(res->cq, events);
    ibv_req_notify_cq(res->cq, 0);  // re-arm first, then drain: nothing is missed
    Napi::HandleScope scope(env_);
    Napi::Array batch = Napi::Array::New(env_);
    uint32_t count = 0;
    ibv_wc wcs[32];
    for (;;) {
      int n = ibv_poll_cq(res->cq, 32, wcs);
      if (n <= 0) break;
      for (int i = 0; i < n; i++) {
        const ibv_wc &wc = wcs[i];
        Napi::Object c = Napi::Object::New(env_);
        c.Set("wrId", Napi::Number::New(env_, static_cast<double>(wc.wr_id)));
        c.Set("status", Napi::String::New(env_, WcStatusName(wc.status)));
        c.Set("opcode", Napi::String::New(env_, wc.status == IBV_WC_SUCCESS ? WcOpcodeName(wc.opcode) : "UNKNOWN"));
        c.Set("byteLength", Napi::Number::New(env_, wc.byte_len));
        c.Set("qpNum", Napi::Number::New(env_, wc.qp_num));
        if (wc.status == IBV_WC_SUCCESS && (wc.opcode & IBV_WC_RECV) && (wc.wc_flags & IBV_WC_WITH_IMM))
          c.Set("imm", Napi::Number::New(env_, ntohl(wc.imm_data)));
        if (wc.status != IBV_WC_SUCCESS) c.Set("vendorError", Napi::Number::New(env_, wc.vendor_err));
        batch.Set(count++, c);
      }
    }
    if (count == 0) return;
    try {
      callback_.MakeCallback(Value(), {batch});
    } catch (const Napi::Error &e) {
      napi_fatal_exception(env_, e.Value());
    }
  }

  void StopPolling() { StopPoll(poll_); }

  void Close(const Napi::CallbackInfo &) {
    if (!res_) return;
    StopPolling();
    res_.reset();
    callback_.Reset();
    Unref();
  }

  std::shared_ptr<CqRes> res_;
  Napi::FunctionReference callback_;
  uv_poll_t *poll_ = nullptr;
  Napi::Env env_ = nullptr;
};

// ─────────────────────────────── QueuePair ───────────────────────────────

class QueuePair : public Napi::ObjectWrap<QueuePair> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "QueuePair",
                       {
                           InstanceAccessor<&QueuePair::QpNum>("qpNum"),
                           InstanceAccessor<&QueuePair::State>("state"),
                           InstanceMethod<&QueuePair::Connect>("connect"),
                           InstanceMethod<&QueuePair::PostWrites>("postWrites"),
                           InstanceMethod<&QueuePair::PostSends>("postSends"),
                           InstanceMethod<&QueuePair::PostRecvs>("postRecvs"),
                           InstanceMethod<&QueuePair::SetError>("setError"),
                           InstanceMethod<&QueuePair::Close>("close"),
                       });
  }

  // QueuePair(pd, sendCq, recvCq, { maxSendWr, maxRecvWr, maxInlineBytes, port }) — RC, moved to INIT.
  // Or QueuePair(pd, sendCq, recvCq, options, cmId): created on an rdma_cm id (rdma_create_qp).
  explicit QueuePair(const Napi::CallbackInfo &info);

  std::shared_ptr<QpRes> Res(Napi::Env env) {
    if (!res_ || res_->qp == nullptr) ThrowClosed(env, "queue pair");
    return res_;
  }

 private:
  Napi::Value QpNum(const Napi::CallbackInfo &info) {
    return res_ && res_->qp != nullptr ? Napi::Number::New(info.Env(), res_->qp->qp_num) : info.Env().Undefined();
  }

  Napi::Value State(const Napi::CallbackInfo &info) {
    if (!res_ || res_->qp == nullptr) return Napi::String::New(info.Env(), "CLOSED");
    ibv_qp_attr attr;
    ibv_qp_init_attr init;
    if (ibv_query_qp(res_->qp, &attr, IBV_QP_STATE, &init) != 0) return Napi::String::New(info.Env(), "UNKNOWN");
    return Napi::String::New(info.Env(), QpStateName(attr.qp_state));
  }

  // connect({ remoteQpNum, remotePsn, remoteGid: Buffer(16), localPsn, gidIndex, port, mtu }): RTR then RTS.
  void Connect(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto res = Res(env);
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value gidValue = o.Get("remoteGid");
    if (!gidValue.IsBuffer() || gidValue.As<Napi::Buffer<uint8_t>>().Length() != 16)
      throw Napi::TypeError::New(env, "remoteGid must be a 16-byte Buffer");
    ibv_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    uint32_t mtu = U32(o, "mtu", 1024);
    a.path_mtu = mtu >= 4096 ? IBV_MTU_4096 : mtu >= 2048 ? IBV_MTU_2048 : mtu >= 1024 ? IBV_MTU_1024 : mtu >= 512 ? IBV_MTU_512 : IBV_MTU_256;
    a.dest_qp_num = U32(o, "remoteQpNum", 0);
    a.rq_psn = U32(o, "remotePsn", 0) & 0xffffff;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 1;  // 0.01 ms: a receiver short of posted receives is retried soon
    a.ah_attr.is_global = 1;
    a.ah_attr.port_num = static_cast<uint8_t>(U32(o, "port", 1));
    memcpy(a.ah_attr.grh.dgid.raw, gidValue.As<Napi::Buffer<uint8_t>>().Data(), 16);
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(U32(o, "gidIndex", 0));
    a.ah_attr.grh.hop_limit = 64;
    int rc = ibv_modify_qp(res->qp, &a,
                           IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                               IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (rc != 0) ThrowVerbs(env, "ibv_modify_qp(RTR)", rc);
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    a.timeout = static_cast<uint8_t>(U32(o, "timeout", 14));
    a.retry_cnt = 7;
    a.rnr_retry = 7;  // infinite: a receiver short of receives is waited for, never an error
    a.sq_psn = U32(o, "localPsn", 0) & 0xffffff;
    a.max_rd_atomic = 1;
    rc = ibv_modify_qp(res->qp, &a,
                       IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                           IBV_QP_MAX_QP_RD_ATOMIC);
    if (rc != 0) ThrowVerbs(env, "ibv_modify_qp(RTS)", rc);
  }

  // postWrites([{ wrId, mr, offset, length, remoteAddress, rkey, imm? }]): one linked batch of
  // RDMA_WRITE / RDMA_WRITE_WITH_IMM (when imm is a number), every one signaled.
  Napi::Value PostWrites(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto res = Res(env);
    Napi::Array ops = info[0].As<Napi::Array>();
    uint32_t n = ops.Length();
    if (n == 0) return Napi::Number::New(env, 0);
    std::vector<ibv_send_wr> wrs(n);
    std::vector<ibv_sge> sges(n);
    for (uint32_t i = 0; i < n; i++) {
      Napi::Object op = ops.Get(i).As<Napi::Object>();
      auto mr = Napi::ObjectWrap<MemoryRegion>::Unwrap(op.Get("mr").As<Napi::Object>())->Res(env);
      uint64_t offset = U64(env, op, "offset");
      uint32_t length = U32(op, "length", 0);
      if (offset + length > mr->mem->bytes) ThrowVerbs(env, "ibv_post_send", EINVAL, "local range outside the MR");
      sges[i].addr = reinterpret_cast<uintptr_t>(mr->mem->ptr) + offset;
      sges[i].length = length;
      sges[i].lkey = mr->mr->lkey;
      ibv_send_wr &wr = wrs[i];
      memset(&wr, 0, sizeof wr);
      wr.wr_id = U64(env, op, "wrId");
      wr.sg_list = &sges[i];
      wr.num_sge = 1;
      wr.send_flags = IBV_SEND_SIGNALED;
      Napi::Value imm = op.Get("imm");
      if (imm.IsNumber()) {
        wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
        wr.imm_data = htonl(imm.As<Napi::Number>().Uint32Value());
      } else {
        wr.opcode = IBV_WR_RDMA_WRITE;
      }
      wr.wr.rdma.remote_addr = U64(env, op, "remoteAddress");
      wr.wr.rdma.rkey = U32(op, "rkey", 0);
      wr.next = i + 1 < n ? &wrs[i + 1] : nullptr;
    }
    return PostSendList(env, res, wrs.data(), n);
  }

  // postSends([{ wrId, mr, offset, length }]): two-sided SENDs, signaled, one linked batch.
  Napi::Value PostSends(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto res = Res(env);
    Napi::Array ops = info[0].As<Napi::Array>();
    uint32_t n = ops.Length();
    if (n == 0) return Napi::Number::New(env, 0);
    std::vector<ibv_send_wr> wrs(n);
    std::vector<ibv_sge> sges(n);
    for (uint32_t i = 0; i < n; i++) {
      Napi::Object op = ops.Get(i).As<Napi::Object>();
      auto mr = Napi::ObjectWrap<MemoryRegion>::Unwrap(op.Get("mr").As<Napi::Object>())->Res(env);
      uint64_t offset = U64(env, op, "offset");
      uint32_t length = U32(op, "length", 0);
      if (offset + length > mr->mem->bytes) ThrowVerbs(env, "ibv_post_send", EINVAL, "local range outside the MR");
      sges[i].addr = reinterpret_cast<uintptr_t>(mr->mem->ptr) + offset;
      sges[i].length = length;
      sges[i].lkey = mr->mr->lkey;
      ibv_send_wr &wr = wrs[i];
      memset(&wr, 0, sizeof wr);
      wr.wr_id = U64(env, op, "wrId");
      wr.sg_list = &sges[i];
      wr.num_sge = 1;
      wr.opcode = IBV_WR_SEND;
      wr.send_flags = IBV_SEND_SIGNALED;
      wr.next = i + 1 < n ? &wrs[i + 1] : nullptr;
    }
    return PostSendList(env, res, wrs.data(), n);
  }

  Napi::Value PostSendList(Napi::Env env, const std::shared_ptr<QpRes> &res, ibv_send_wr *first, uint32_t n) {
    ibv_send_wr *bad = nullptr;
    int rc = ibv_post_send(res->qp, first, &bad);
    if (rc != 0) {
      uint32_t posted = 0;
      for (ibv_send_wr *w = first; w != nullptr && w != bad; w = w->next) posted++;
      Napi::Error error = VerbsError(env, "ibv_post_send", rc, std::to_string(posted) + " of " + std::to_string(n) + " posted");
      error.Set("posted", Napi::Number::New(env, posted));
      throw error;
    }
    return Napi::Number::New(env, n);
  }

  // postRecvs([{ wrId, mr?, offset, length }]): receives (no mr: a zero-length receive for WRITE_WITH_IMM).
  Napi::Value PostRecvs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto res = Res(env);
    Napi::Array ops = info[0].As<Napi::Array>();
    uint32_t n = ops.Length();
    if (n == 0) return Napi::Number::New(env, 0);
    std::vector<ibv_recv_wr> wrs(n);
    std::vector<ibv_sge> sges(n);
    for (uint32_t i = 0; i < n; i++) {
      Napi::Object op = ops.Get(i).As<Napi::Object>();
      ibv_recv_wr &wr = wrs[i];
      memset(&wr, 0, sizeof wr);
      wr.wr_id = U64(env, op, "wrId");
      Napi::Value mrValue = op.Get("mr");
      if (mrValue.IsObject()) {
        auto mr = Napi::ObjectWrap<MemoryRegion>::Unwrap(mrValue.As<Napi::Object>())->Res(env);
        uint64_t offset = U64(env, op, "offset");
        uint32_t length = U32(op, "length", 0);
        if (offset + length > mr->mem->bytes) ThrowVerbs(env, "ibv_post_recv", EINVAL, "local range outside the MR");
        sges[i].addr = reinterpret_cast<uintptr_t>(mr->mem->ptr) + offset;
        sges[i].length = length;
        sges[i].lkey = mr->mr->lkey;
        wr.sg_list = &sges[i];
        wr.num_sge = 1;
      }
      wr.next = i + 1 < n ? &wrs[i + 1] : nullptr;
    }
    ibv_recv_wr *bad = nullptr;
    int rc = ibv_post_recv(res->qp, wrs.data(), &bad);
    if (rc != 0) ThrowVerbs(env, "ibv_post_recv", rc);
    return Napi::Number::New(env, n);
  }

  // Moves the QP to ERR: every outstanding work request completes with IBV_WC_WR_FLUSH_ERR.
  void SetError(const Napi::CallbackInfo &info) {
    auto res = Res(info.Env());
    ibv_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_ERR;
    int rc = ibv_modify_qp(res->qp, &a, IBV_QP_STATE);
    if (rc != 0) ThrowVerbs(info.Env(), "ibv_modify_qp(ERR)", rc);
  }

  void Close(const Napi::CallbackInfo &) { res_.reset(); }

  std::shared_ptr<QpRes> res_;
};

// ─────────────────────────────── rdma_cm ───────────────────────────────

const char *CmEventName(rdma_cm_event_type type) { return rdma_event_str(type); }

struct CmChannelRes {
  rdma_event_channel *channel = nullptr;
  ~CmChannelRes() {
    if (channel != nullptr) rdma_destroy_event_channel(channel);
  }
};

struct CmIdRes {
  std::shared_ptr<CmChannelRes> channel;
  rdma_cm_id *id = nullptr;
  std::shared_ptr<QpRes> qp;  // the QP created on this id, destroyed before the id
  ~CmIdRes() {
    // A QueuePair object may outlive the id: its QP goes now (rdma_destroy_id needs it gone), and
    // the QueuePair reports itself closed from then on.
    if (qp) {
      if (qp->cmId != nullptr) rdma_destroy_qp(qp->cmId);
      qp->cmId = nullptr;
      qp->qp = nullptr;
    }
    if (id != nullptr) rdma_destroy_id(id);
  }
};

class CmId;

// An rdma_cm event channel: its fd watched with uv_poll; each event is acked after being copied
// and handed to JS as { type, id (the CmId object, new for CONNECT_REQUEST), status, privateData }.
class CmChannel : public Napi::ObjectWrap<CmChannel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CmChannel", {InstanceMethod<&CmChannel::Close>("close")});
  }

  explicit CmChannel(const Napi::CallbackInfo &info);
  ~CmChannel() override { StopPolling(); }

  std::shared_ptr<CmChannelRes> Res(Napi::Env env) {
    if (!res_) ThrowClosed(env, "rdma_cm event channel");
    return res_;
  }

  // JS objects of the ids created on this channel, by rdma_cm_id pointer (weak: an id closed or
  // collected is removed).
  std::vector<std::pair<rdma_cm_id *, Napi::ObjectReference *>> ids;

 private:
  static void OnReadable(uv_poll_t *handle, int, int) { static_cast<CmChannel *>(handle->data)->Drain(); }
  void Drain();
  void StopPolling() { StopPoll(poll_); }
  void Close(const Napi::CallbackInfo &) {
    if (!res_) return;
    StopPolling();
    res_.reset();
    callback_.Reset();
    Unref();
  }

  std::shared_ptr<CmChannelRes> res_;
  Napi::FunctionReference callback_;
  uv_poll_t *poll_ = nullptr;
  Napi::Env env_ = nullptr;
};

class CmId : public Napi::ObjectWrap<CmId> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CmId",
                       {
                           InstanceMethod<&CmId::Listen>("listen"),
                           InstanceMethod<&CmId::ResolveAddress>("resolveAddress"),
                           InstanceMethod<&CmId::ResolveRoute>("resolveRoute"),
                           InstanceMethod<&CmId::CreateQp>("createQp"),
                           InstanceMethod<&CmId::Connect>("connect"),
                           InstanceMethod<&CmId::Accept>("accept"),
                           InstanceMethod<&CmId::Reject>("reject"),
                           InstanceMethod<&CmId::Disconnect>("disconnect"),
                           InstanceMethod<&CmId::DeviceName>("deviceName"),
                           InstanceMethod<&CmId::Port>("port"),
                           InstanceMethod<&CmId::Close>("close"),
                       });
  }

  // new CmId(channel) creates an id; new CmId(channel, External<rdma_cm_id>) wraps a connect request's id.
  explicit CmId(const Napi::CallbackInfo &info) : Napi::ObjectWrap<CmId>(info) {
    Napi::Env env = info.Env();
    channelObj_ = Napi::Persistent(info[0].As<Napi::Object>());
    CmChannel *channel = Napi::ObjectWrap<CmChannel>::Unwrap(info[0].As<Napi::Object>());
    res_ = std::make_shared<CmIdRes>();
    res_->channel = channel->Res(env);
    if (info.Length() > 1 && info[1].IsExternal()) {
      res_->id = info[1].As<Napi::External<rdma_cm_id>>().Data();
    } else {
      if (rdma_create_id(res_->channel->channel, &res_->id, nullptr, RDMA_PS_TCP) != 0) {
        res_->id = nullptr;
        ThrowVerbs(env, "rdma_create_id", errno);
      }
    }
    self_ = new Napi::ObjectReference(Napi::Weak(Value()));
    channel->ids.emplace_back(res_->id, self_);
  }

  ~CmId() override { Forget(); }

  rdma_cm_id *Id(Napi::Env env) {
    if (!res_) ThrowClosed(env, "rdma_cm id");
    return res_->id;
  }

  std::shared_ptr<QpRes> TakeQpRes(Napi::Env env) { return res_ ? res_->qp : nullptr; }
  void SetQpRes(const std::shared_ptr<QpRes> &qp) { res_->qp = qp; }

 private:
  void Forget() {
    if (self_ == nullptr) return;
    if (!channelObj_.IsEmpty()) {
      CmChannel *channel = Napi::ObjectWrap<CmChannel>::Unwrap(channelObj_.Value());
      for (auto it = channel->ids.begin(); it != channel->ids.end(); ++it)
        if (it->second == self_) {
          channel->ids.erase(it);
          break;
        }
    }
    delete self_;
    self_ = nullptr;
  }

  static sockaddr_in Address(Napi::Env env, const Napi::Value &host, const Napi::Value &port) {
    sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port.As<Napi::Number>().Uint32Value()));
    std::string h = host.As<Napi::String>();
    if (inet_pton(AF_INET, h.c_str(), &sa.sin_addr) != 1) ThrowVerbs(env, "inet_pton", EINVAL, h);
    return sa;
  }

  // listen(host, port, backlog): bind then listen; returns the bound port.
  Napi::Value Listen(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    rdma_cm_id *id = Id(env);
    sockaddr_in sa = Address(env, info[0], info[1]);
    if (rdma_bind_addr(id, reinterpret_cast<sockaddr *>(&sa)) != 0) ThrowVerbs(env, "rdma_bind_addr", errno);
    if (rdma_listen(id, info.Length() > 2 ? info[2].As<Napi::Number>().Int32Value() : 16) != 0)
      ThrowVerbs(env, "rdma_listen", errno);
    return Napi::Number::New(env, ntohs(rdma_get_src_port(id)));
  }

  // resolveAddress(host, port, timeoutMs[, sourceHost]): completes with ADDR_RESOLVED / ADDR_ERROR.
  void ResolveAddress(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    rdma_cm_id *id = Id(env);
    sockaddr_in dst = Address(env, info[0], info[1]);
    int timeoutMs = info[2].As<Napi::Number>().Int32Value();
    sockaddr_in src;
    sockaddr *srcp = nullptr;
    if (info.Length() > 3 && info[3].IsString()) {
      src = Address(env, info[3], Napi::Number::New(env, 0));
      srcp = reinterpret_cast<sockaddr *>(&src);
    }
    if (rdma_resolve_addr(id, srcp, reinterpret_cast<sockaddr *>(&dst), timeoutMs) != 0)
      ThrowVerbs(env, "rdma_resolve_addr", errno);
  }

  void ResolveRoute(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (rdma_resolve_route(Id(env), info[0].As<Napi::Number>().Int32Value()) != 0)
      ThrowVerbs(env, "rdma_resolve_route", errno);
  }

  // createQp(pd, sendCq, recvCq, options): an RC QP on this id (rdma_create_qp); returns a QueuePair.
  Napi::Value CreateQp(const Napi::CallbackInfo &info);

  static rdma_conn_param Param(const Napi::CallbackInfo &info, size_t index, std::vector<uint8_t> &data) {
    rdma_conn_param p;
    memset(&p, 0, sizeof p);
    if (info.Length() > index && info[index].IsBuffer()) {
      auto buffer = info[index].As<Napi::Buffer<uint8_t>>();
      data.assign(buffer.Data(), buffer.Data() + buffer.Length());
      p.private_data = data.data();
      p.private_data_len = static_cast<uint8_t>(data.size());
    }
    p.responder_resources = 1;
    p.initiator_depth = 1;
    p.retry_count = 7;
    p.rnr_retry_count = 7;
    return p;
  }

  void Connect(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::vector<uint8_t> data;
    rdma_conn_param p = Param(info, 0, data);
    if (data.size() > 56) ThrowVerbs(env, "rdma_connect", EINVAL, "private data over 56 bytes");
    if (rdma_connect(Id(env), &p) != 0) ThrowVerbs(env, "rdma_connect", errno);
  }

  void Accept(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::vector<uint8_t> data;
    rdma_conn_param p = Param(info, 0, data);
    if (rdma_accept(Id(env), &p) != 0) ThrowVerbs(env, "rdma_accept", errno);
  }

  void Reject(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::vector<uint8_t> data;
    if (info.Length() > 0 && info[0].IsBuffer()) {
      auto buffer = info[0].As<Napi::Buffer<uint8_t>>();
      data.assign(buffer.Data(), buffer.Data() + buffer.Length());
    }
    if (rdma_reject(Id(env), data.empty() ? nullptr : data.data(), static_cast<uint8_t>(data.size())) != 0)
      ThrowVerbs(env, "rdma_reject", errno);
  }

  void Disconnect(const Napi::CallbackInfo &info) {
    if (!res_) return;
    rdma_disconnect(res_->id);  // EINVAL when not connected: closing twice is fine
  }

  Napi::Value DeviceName(const Napi::CallbackInfo &info) {
    rdma_cm_id *id = Id(info.Env());
    if (id->verbs == nullptr) return info.Env().Undefined();
    return Napi::String::New(info.Env(), ibv_get_device_name(id->verbs->device));
  }

  Napi::Value Port(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), ntohs(rdma_get_src_port(Id(info.Env()))));
  }

  void Close(const Napi::CallbackInfo &) {
    Forget();
    res_.reset();
    channelObj_.Reset();
  }

  std::shared_ptr<CmIdRes> res_;
  Napi::ObjectReference channelObj_;
  Napi::ObjectReference *self_ = nullptr;
};

AddonData *Data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

QueuePair::QueuePair(const Napi::CallbackInfo &info) : Napi::ObjectWrap<QueuePair>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsObject() || !info[3].IsObject())
    throw Napi::TypeError::New(env, "QueuePair(pd, sendCq, recvCq, options)");
  auto res = std::make_shared<QpRes>();
  res->pd = Napi::ObjectWrap<ProtectionDomain>::Unwrap(info[0].As<Napi::Object>())->Res(env);
  res->sendCq = Napi::ObjectWrap<CompletionQueue>::Unwrap(info[1].As<Napi::Object>())->Res(env);
  res->recvCq = Napi::ObjectWrap<CompletionQueue>::Unwrap(info[2].As<Napi::Object>())->Res(env);
  Napi::Object o = info[3].As<Napi::Object>();
  ibv_qp_init_attr ia;
  memset(&ia, 0, sizeof ia);
  ia.send_cq = res->sendCq->cq;
  ia.recv_cq = res->recvCq->cq;
  ia.qp_type = IBV_QPT_RC;
  ia.cap.max_send_wr = U32(o, "maxSendWr", 128);
  ia.cap.max_recv_wr = U32(o, "maxRecvWr", 128);
  ia.cap.max_send_sge = 1;
  ia.cap.max_recv_sge = 1;
  ia.cap.max_inline_data = U32(o, "maxInlineBytes", 0);
  if (info.Length() > 4 && info[4].IsObject()) {
    CmId *cmId = Napi::ObjectWrap<CmId>::Unwrap(info[4].As<Napi::Object>());
    rdma_cm_id *id = cmId->Id(env);
    if (rdma_create_qp(id, res->pd->pd, &ia) != 0) ThrowVerbs(env, "rdma_create_qp", errno);
    res->qp = id->qp;
    res->cmId = id;
    cmId->SetQpRes(res);
    res_ = res;
    return;
  }
  res->qp = ibv_create_qp(res->pd->pd, &ia);
  if (res->qp == nullptr) ThrowVerbs(env, "ibv_create_qp", errno != 0 ? errno : ENOMEM);
  ibv_qp_attr a;
  memset(&a, 0, sizeof a);
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = static_cast<uint8_t>(U32(o, "port", 1));
  a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
  int rc = ibv_modify_qp(res->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
  if (rc != 0) {
    ibv_destroy_qp(res->qp);
    res->qp = nullptr;
    ThrowVerbs(env, "ibv_modify_qp(INIT)", rc);
  }
  res_ = res;
}

Napi::Value CmId::CreateQp(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  return Data(env)->qp.New({info[0], info[1], info[2], info[3], Value()});
}

CmChannel::CmChannel(const Napi::CallbackInfo &info) : Napi::ObjectWrap<CmChannel>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "CmChannel(onEvent)");
  auto res = std::make_shared<CmChannelRes>();
  res->channel = rdma_create_event_channel();
  if (res->channel == nullptr) ThrowVerbs(env, "rdma_create_event_channel", errno != 0 ? errno : ENODEV);
  int flags = fcntl(res->channel->fd, F_GETFL);
  if (fcntl(res->channel->fd, F_SETFL, flags | O_NONBLOCK) != 0) ThrowVerbs(env, "fcntl", errno);
  callback_ = Napi::Persistent(info[0].As<Napi::Function>());
  uv_loop_t *loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  poll_ = new uv_poll_t;
  poll_->data = this;
  uv_poll_init(loop, poll_, res->channel->fd);
  uv_poll_start(poll_, UV_READABLE, OnReadable);
  res_ = res;
  env_ = env;
  Ref();
}

void CmChannel::Drain() {
  if (!res_) return;
  Napi::HandleScope scope(env_);
  rdma_cm_event *event = nullptr;
  while (res_ && rdma_get_cm_event(res_->channel, &event) == 0) {
    Napi::Object e = Napi::Object::New(env_);
    e.Set("type", Napi::String::New(env_, CmEventName(event->event)));
    e.Set("status", Napi::Number::New(env_, event->status));
    const void *pdata = event->param.conn.private_data;
    uint8_t plen = event->param.conn.private_data_len;
    if (pdata != nullptr && plen > 0)
      e.Set("privateData", Napi::Buffer<uint8_t>::Copy(env_, static_cast<const uint8_t *>(pdata), plen));
    rdma_cm_id *id = event->id;
    rdma_cm_id *listenId = event->listen_id;
    bool request = event->event == RDMA_CM_EVENT_CONNECT_REQUEST;
    rdma_ack_cm_event(event);
    if (request) {
      e.Set("id", Data(env_)->cmId.New({Value(), Napi::External<rdma_cm_id>::New(env_, id)}));
      id = listenId;
    }
    for (auto &entry : ids)
      if (entry.first == id && !entry.second->IsEmpty()) {
        e.Set(request ? "listenId" : "id", entry.second->Value());
        break;
      }
    try {
      callback_.MakeCallback(Value(), {e});
    } catch (const Napi::Error &err) {
      napi_fatal_exception(env_, err.Value());
    }
  }
}

// ─────────────────────────────── module functions ───────────────────────────────

// listDevices(): [{ name, guid }] — empty when there is no device (or no verbs kernel support).
Napi::Value ListDevices(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  int n = 0;
  ibv_device **list = ibv_get_device_list(&n);
  if (list == nullptr) return out;
  for (int i = 0; i < n; i++) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", Napi::String::New(env, ibv_get_device_name(list[i])));
    char guid[20];
    snprintf(guid, sizeof guid, "%016llx", static_cast<unsigned long long>(be64toh(ibv_get_device_guid(list[i]))));
    d.Set("guid", Napi::String::New(env, guid));
    out.Set(i, d);
  }
  ibv_free_device_list(list);
  return out;
}

Napi::Value ForkInitStatus(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), Data(info.Env())->forkInit);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto *data = new AddonData();
  data->forkInit = ibv_fork_init();  // before any registration
  env.SetInstanceData(data);
  Napi::Function device = Device::Init(env);
  Napi::Function pd = ProtectionDomain::Init(env);
  Napi::Function mr = MemoryRegion::Init(env);
  Napi::Function cq = CompletionQueue::Init(env);
  Napi::Function qp = QueuePair::Init(env);
  Napi::Function cmChannel = CmChannel::Init(env);
  Napi::Function cmId = CmId::Init(env);
  data->device = Napi::Persistent(device);
  data->pd = Napi::Persistent(pd);
  data->mr = Napi::Persistent(mr);
  data->cq = Napi::Persistent(cq);
  data->qp = Napi::Persistent(qp);
  data->cmChannel = Napi::Persistent(cmChannel);
  data->cmId = Napi::Persistent(cmId);
  exports.Set("Device", device);
  exports.Set("ProtectionDomain", pd);
  exports.Set("MemoryRegion", mr);
  exports.Set("CompletionQueue", cq);
  exports.Set("QueuePair", qp);
  exports.Set("CmChannel", cmChannel);
  exports.Set("CmId", cmId);
  exports.Set("listDevices", Napi::Function::New(env, ListDevices, "listDevices"));
  exports.Set("forkInitStatus", Napi::Function::New(env, ForkInitStatus, "forkInitStatus"));
  return exports;
}

}  // namespace

NODE_API_MODULE(talos_rdma, Init)
