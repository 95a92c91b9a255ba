#!/usr/bin/env bash
# The segmentation distillation experiment of results/seg_stronger_teacher/README.md, resumable:
# run it again after an interruption and it goes on (train.py and tools.compare resume runs).
#   bash results/seg_stronger_teacher/run.sh [WORK_FOLDER]     (default /tmp/segt)
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${1:-/tmp/segt}
PY=${PY:-.venv/bin/python}
DATA="voc_root=$W/VOCdevkit sbd_root=null classes=[background,rect,disc,triangle] gpu_list=[] pretrained=null
      batch_size=4 crop_size=48 num_workers=0 lr=0.02 progress=false"
# 1. 96 training and 24 validation 64x64 images of 3 shape classes; the students' list: the first 16
if [[ ! -f "$W/VOCdevkit/VOC2012/ImageSets/Segmentation/train16.txt" ]]; then
  "$PY" -c "from tests.seg_synth import make_voc_segmentation as m; m('$W/VOCdevkit', classes=4, train=96, val=24, size=(64, 64), seed=11)"
  head -n 16 "$W/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt" > "$W/VOCdevkit/VOC2012/ImageSets/Segmentation/train16.txt"
fi
# 2. the teacher: DeepLabV3+ on preact_resnet18, ASPP 64 wide, 25 epochs of all 96 training images
retrain=()
[[ -n "$(ls "$W"/model/teacher-0*.json 2>/dev/null)" ]] && retrain=(retrain=true model_load_epoch=-1)
if [[ ! -f "$W/model/teacher-0025.json" ]]; then
  "$PY" train.py --cfg seg_voc_r18_deeplabv3plus $DATA aspp_channels=64 num_epoch=25 \
      model_dir="$W/model" log_dir="$W/log" model_prefix=teacher "${retrain[@]}"
fi
# 3. the students: ASPP 16 wide, the 16-image list, 50 epochs; alone, KD per pixel, CWD; seeds 0-2
"$PY" -m tools.compare --cfg seg_voc_r18_deeplabv3plus_cwd $DATA train_split=train16 aspp_channels=16 \
    teacher_prefix="$W/model/teacher" --methods student kd cwd --seeds 0 1 2 --epochs 50 --name segt50 --out "$W/cmp50"
"$PY" -m tools.plot_masks --prefix "$W/model/teacher" "$W/cmp50/model/segt50_student_s0" "$W/cmp50/model/segt50_kd_s0" \
    "$W/cmp50/model/segt50_cwd_s0" --out "$W/masks.png"
