# GPU checks for issue 8 (export / distributed), run on a CUDA machine from the project root: bash tests/export/gpu_check.sh
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 WORKBENCH_HOME=/tmp/wbh OMP_NUM_THREADS=4
nvidia-smi -L
python3 tests/export/gpu_check.py; echo "gpu_check rc=$?"
python3 -m workbench train charlm_gru --device cuda --steps 40 --set data.options.seq_len=64 --set train.precision=bf16 --set train.eval_every=20 --run-dir /tmp/r1 --quiet; echo "train rc=$?"
python3 -m workbench export /tmp/r1 --onnx /tmp/m.onnx --script /tmp/s; echo "export rc=$?"
(cd /tmp/s && python3 train.py --device cuda --steps 40 --out o --log-every 10; echo "script bf16 rc=$?")
python3 -c "import json;p=json.load(open('/tmp/s/preset.json'));p['train']['precision']='fp16';json.dump(p,open('/tmp/s/preset.json','w'))"
(cd /tmp/s && python3 train.py --device cuda --steps 40 --out o16 --log-every 10; echo "script fp16 rc=$?")
timeout 120 torchrun --nproc_per_node 2 -m workbench train charlm_gru --device cuda --steps 5 --run-dir /tmp/r2 --quiet 2>&1 | grep -v "^W" | tail -4; echo "torchrun 2 on 1 gpu rc=${PIPESTATUS[0]}"
(cd /tmp/s && timeout 120 torchrun --nproc_per_node 2 train.py --device cuda --steps 5 2>&1 | grep -v "^W" | tail -4; echo "script torchrun 2 on 1 gpu rc=${PIPESTATUS[0]}")
python3 -m workbench runs
python3 -m pytest -q -p no:cacheprovider tests/export/test_onnx.py 2>&1 | tail -3
