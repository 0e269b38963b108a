#!/usr/bin/env python3
"""Static PTX instruction mix of every kernel in NVIDIA program binaries.

NVIDIA's OpenCL returns PTX text as a program's binary, and the library's program cache stores
those binaries (KVARN_CL_CACHE_DIR, one .clbin per build). This counts each kernel entry's
instructions by class (fp32 fma, integer shifts and logic, shared and global loads, conversions,
mma, barriers, ...): how many issue slots the decode of codes takes beside the multiply-adds
(docs/PERFORMANCE.md, "What bounds the portable kernels"). Static counts: unrolled loops weigh in
as written, loops that are not unrolled once.

Usage: KVARN_CL_CACHE_DIR=/tmp/kvc opencl_attention_bench ...; ptx_mix.py /tmp/kvc
"""
import collections
import glob
import re
import sys

d = sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__)
for f in sorted(glob.glob(d + '/*.clbin')):
    t = open(f, 'rb').read().decode('latin-1')
    for m in re.finditer(r'\.entry\s+(\w+)\(', t):
        name = m.group(1)
        end = t.find('\n}\n', m.end())
        body = t[m.end():end if end > 0 else len(t)]
        c = collections.Counter()
        for line in body.split('\n'):
            line = line.strip()
            if not line or line.startswith(('//', '.', '{', '}', '$')) or line.endswith(':'): continue
            op = re.sub(r'^@!?%p\d+\s+', '', line).split()[0].rstrip(';')
            base = op.split('.')[0]
            cls = {'fma':'fp32 fma','mul':'mul','add':'add/sub','sub':'add/sub','shl':'int shift','shr':'int shift',
                   'lop3':'int logic','and':'int logic','or':'int logic','xor':'int logic','ld':'load','st':'store',
                   'cvt':'convert','mma':'mma','ex2':'sfu','rcp':'sfu','bar':'barrier','mov':'mov','shfl':'shfl','prmt':'int logic',
                   'bfe':'int logic','setp':'compare','selp':'select'}.get(base, 'other')
            if base == 'ld': cls = 'load ' + ('shared' if '.shared' in op else 'global' if '.global' in op else 'other')
            if base in ('fma','mul','add','sub') and '.f32' not in op: cls = 'int ' + base
            c[cls] += 1
        tot = sum(c.values())
        if tot < 50: continue
        print(f'{f.split("/")[-1]} {name}: {tot} instructions: ' + ', '.join(f'{k} {v}' for k, v in c.most_common(14)))
