"""Content codings for the test fakes and e2e tests: gzip and deflate via
zlib, br and zstd via the system libraries (libbrotli, libzstd) through
ctypes, so no Python package beyond the standard library is needed."""
import ctypes
import ctypes.util
import zlib

_br_dec = ctypes.CDLL(ctypes.util.find_library("brotlidec") or "libbrotlidec.so.1")
_br_enc = ctypes.CDLL(ctypes.util.find_library("brotlienc") or "libbrotlienc.so.1")
_zstd = ctypes.CDLL(ctypes.util.find_library("zstd") or "libzstd.so.1")
_zstd.ZSTD_compressBound.restype = ctypes.c_size_t
_zstd.ZSTD_compress.restype = ctypes.c_size_t
_zstd.ZSTD_decompress.restype = ctypes.c_size_t
_zstd.ZSTD_isError.restype = ctypes.c_uint
_zstd.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong


def br_compress(data):
    out_len = ctypes.c_size_t(len(data) + 1024)
    out = ctypes.create_string_buffer(out_len.value)
    ok = _br_enc.BrotliEncoderCompress(5, 22, 0, ctypes.c_size_t(len(data)), data, ctypes.byref(out_len), out)
    if not ok:
        raise ValueError("brotli compress failed")
    return out.raw[:out_len.value]


def br_decompress(data, limit=64 << 20):
    size = max(1024, len(data) * 8)
    while size <= limit:
        out_len = ctypes.c_size_t(size)
        out = ctypes.create_string_buffer(size)
        r = _br_dec.BrotliDecoderDecompress(ctypes.c_size_t(len(data)), data, ctypes.byref(out_len), out)
        if r == 1:
            return out.raw[:out_len.value]
        size *= 4
    raise ValueError("brotli: corrupt or too large")


def zstd_compress(data):
    cap = _zstd.ZSTD_compressBound(ctypes.c_size_t(len(data)))
    out = ctypes.create_string_buffer(cap)
    n = _zstd.ZSTD_compress(out, ctypes.c_size_t(cap), data, ctypes.c_size_t(len(data)), 3)
    if _zstd.ZSTD_isError(ctypes.c_size_t(n)):
        raise ValueError("zstd compress failed")
    return out.raw[:n]


def zstd_decompress(data, limit=64 << 20):
    size = _zstd.ZSTD_getFrameContentSize(data, ctypes.c_size_t(len(data)))
    if size > limit:
        raise ValueError("zstd: unknown or too large content size")
    out = ctypes.create_string_buffer(max(int(size), 1))
    n = _zstd.ZSTD_decompress(out, ctypes.c_size_t(size), data, ctypes.c_size_t(len(data)))
    if _zstd.ZSTD_isError(ctypes.c_size_t(n)):
        raise ValueError("zstd: corrupt")
    return out.raw[:n]


def compress(coding, data):
    if coding == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
        return c.compress(data) + c.flush()
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "deflate-raw":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    if coding == "br":
        return br_compress(data)
    if coding == "zstd":
        return zstd_compress(data)
    raise ValueError("unknown coding %s" % coding)


def decompress(coding_header, data):
    """Undo a Content-Encoding list (applied in order, undone last first)."""
    for c in reversed([c.strip().lower() for c in coding_header.split(",") if c.strip()]):
        if c in ("gzip", "x-gzip"):
            data = zlib.decompress(data, 16 + 15)
        elif c == "deflate":
            try:
                data = zlib.decompress(data)
            except zlib.error:
                data = zlib.decompress(data, -15)
        elif c == "br":
            data = br_decompress(data)
        elif c == "zstd":
            data = zstd_decompress(data)
        elif c != "identity":
            raise ValueError("unknown coding %s" % c)
    return data
