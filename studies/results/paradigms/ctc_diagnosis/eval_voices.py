"""CER/WER of a CTC checkpoint on clean clips per split/voice (diagnostic)."""
import sys, collections
import numpy as np, torch
from edm_se.tasks.checkpoint import load_task_model
from edm_se.tasks.data import read_task_manifest
from edm_se.audio import load_audio
import jiwer
from edm_se.asr import normalise_text
torch.set_num_threads(1)
ckpt = sys.argv[1]
m = load_task_model(ckpt)
rows = read_task_manifest('data_cache/tasks/sentences/manifest.csv')
by = collections.defaultdict(list)
for r in rows:
    by[(r['split'], r['voice'])].append(r)
for key in sorted(by):
    sel = by[key][:: max(1, len(by[key]) // 40)][:40]
    refs, hyps = [], []
    with torch.no_grad():
        for r in sel:
            x = load_audio('data_cache/tasks/sentences/' + r['path'], 16000)
            x = torch.as_tensor(np.asarray(x, np.float32)).reshape(1, -1)
            hyps.append(normalise_text(m.predict(m(x))[0])); refs.append(normalise_text(r['text']))
    print(f"{key[0]:6s} {key[1]:7s} n={len(sel):3d} CER {100*jiwer.cer(refs,hyps):6.1f}  WER {100*jiwer.wer(refs,hyps):6.1f}   e.g. {hyps[0]!r} <- {refs[0]!r}")
