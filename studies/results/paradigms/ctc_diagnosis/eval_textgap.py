"""Text gap vs voice gap: a training voice (kal16, flite diphone, default settings) speaks the held-out test
sentences; CER/WER of CTC checkpoints on these clips vs the same checkpoints on the test voices."""
import sys
import numpy as np, torch, jiwer
from scipy.signal import resample_poly
from edm_se.tasks.checkpoint import load_task_model
from edm_se.tasks.data import read_task_manifest, Flite
from edm_se.data.fetch import Fetcher
from edm_se.asr import normalise_text
torch.set_num_threads(1)
rows = [r for r in read_task_manifest('data_cache/tasks/sentences/manifest.csv') if r['split'] == 'test' and r['voice'] == 'awb']
rows = rows[:: max(1, len(rows) // 40)][:40]
fl = Flite(Fetcher('data_cache/corpus/.cache'))  # conf/data_tasks.yaml's cache_dir (Debian packages)
clips = []
for r in rows:
    x, sr = fl.say('kal16', r['text'], None, 1.0)
    if sr != 16000:
        x = resample_poly(x, 16000, sr)
    clips.append(torch.as_tensor(np.asarray(x, np.float32)).reshape(1, -1))
refs = [normalise_text(r['text']) for r in rows]
for ckpt in sys.argv[1:]:
    m = load_task_model(ckpt)
    with torch.no_grad():
        hyps = [normalise_text(m.predict(m(x))[0]) for x in clips]
    print(f"{ckpt}: kal16 on test texts n={len(rows)} CER {100*jiwer.cer(refs, hyps):6.1f} WER {100*jiwer.wer(refs, hyps):6.1f}  e.g. {hyps[0]!r} <- {refs[0]!r}")
