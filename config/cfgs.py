# The default run: an NST + KD student distilled from the default teacher on
# Fashion-MNIST (packed by init.sh). Keys and meanings follow the original NST
# code base; config/schema.py documents every key. `python train.py --cfg
# PRESET key=value` runs something else without editing this file.

gpu_list = []                      # [] = CPU; e.g. [0, 1, 2, 3] for four GPUs
dataset = 'fashion_mnist'
model_prefix = 'fmnist_resnet8_kd_nst'
network = 'cifar_resnet8'          # student
depth = None
model_load_prefix = model_prefix  # the run to resume; follows model_prefix (also model_prefix=X on the command line)
model_load_epoch = 0               # with retrain: the epoch to resume from; -1 the latest finite checkpoint
retrain = False                    # resume: python train.py retrain=true model_load_epoch=-1
begin_epoch = None                 # derived: model_load_epoch when retrain, else 0

# data
data_dir = 'datasets/fashion_mnist'
batch_size = 128                   # per device
kv_store = 'device'

# optimizer
optimizer = 'nag'
lr = 0.1
wd = 0.0001
momentum = 0.9
lr_mode = 'cosine'
lr_step = [30, 60, 90]             # used with lr_mode = 'step'
lr_factor = 0.1
num_epoch = 2
frequent = 20

# network config
num_classes = None                 # from the data: the pack's classes.txt (10 for Fashion-MNIST)

# knowledge transfer
kt = True
kt_type = 'kd+mmd'
teacher_prefix = 'model/fmnist_resnet14_teacher'   # trained by init.sh
teacher_epoch = -1                                  # -1: the teacher's best epoch
teacher_symbol = [None, 'stage3_pre']               # kd uses the logits; NST the last pre-ReLU map
student_symbol = [None, 'stage3_pre']
mmd_kernel = 'poly'
kt_weight = [16, 50]                                # the paper's KD and NST weights
kd_t = 4
