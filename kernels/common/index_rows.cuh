// The sequence a query row of a chunked index launch belongs to (IndexRowsParams in
// params.h): shared by the chunked top-k selection and the indexer's scores, so that both
// kernels of one chunk agree on every row's keys and causal limit.
#pragma once
#include "common/c_std.h"

#include "params.h"

namespace index_rows {

struct RowSeq {
    int b;          // the sequence
    int64_t key0;   // its first key row in a contiguous or packed k (0 when paged)
    int len_k;      // its keys, 0 when its bounds are bad
    int n;          // the row's candidates: keys [0, n)
};

// Row r of the whole index tensor (0 <= r < total_q). Every value read from the device is
// checked, so corrupt lengths give an empty row, never an address outside the buffers.
__device__ __forceinline__ RowSeq resolve(const IndexRowsParams& p, int r) {
    RowSeq s;
    bool ok = p.batch > 0 && r >= 0 && r < p.total_q;
    int b = 0, i = 0, len_q = 0;
    if (p.cu_seqlens_q != 0) {
        // The last sequence whose start is <= r (a binary search stays in [0, batch) whatever
        // the values; a row outside the sequence it lands on is refused below).
        const int32_t* cq = reinterpret_cast<const int32_t*>(p.cu_seqlens_q);
        int lo = 0, hi = p.batch - 1;
        while (lo < hi) {
            const int mid = lo + (hi - lo + 1) / 2;
            if (cq[mid] <= r) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        b = lo;
        const int q0 = cq[b], q1 = cq[b + 1];
        ok = ok && 0 <= q0 && q0 <= r && r < q1 && q1 <= p.total_q;
        i = r - q0;
        len_q = q1 - q0;
    } else {
        ok = ok && p.seq_q > 0;
        b = ok ? r / p.seq_q : 0;
        i = ok ? r % p.seq_q : 0;
        len_q = p.seq_q;
        ok = ok && b < p.batch;
    }
    int len_k = p.seq_k;
    int64_t key0 = (int64_t)b * p.seq_k;
    if (p.cu_seqlens_k != 0) {
        const int32_t* ck = reinterpret_cast<const int32_t*>(p.cu_seqlens_k);
        const int k0 = ok ? ck[b] : 0, k1 = ok ? ck[b + 1] : 0;
        ok = ok && 0 <= k0 && k0 <= k1 && k1 <= p.total_k && k1 - k0 <= p.seq_k;
        len_k = k1 - k0;
        key0 = k0;
    } else if (p.seqlens_k != 0) {
        const int lk = ok ? reinterpret_cast<const int32_t*>(p.seqlens_k)[b] : 0;
        ok = ok && 0 <= lk && lk <= p.seq_k;
        len_k = lk;
        key0 = 0;
    }
    s.b = b;
    s.key0 = ok ? key0 : 0;
    s.len_k = ok ? len_k : 0;
    int64_t n = s.len_k;
    if (p.causal != 0) {
        const int64_t limit = (int64_t)i + s.len_k - len_q + 1;
        n = limit < 0 ? 0 : (limit < n ? limit : n);
    }
    s.n = (int)n;
    return s;
}

}  // namespace index_rows
