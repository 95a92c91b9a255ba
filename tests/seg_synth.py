"""A small PASCAL VOC 2012 segmentation dataset in the real layout: VOCdevkit/VOC2012/JPEGImages/ID.jpg,
SegmentationClass/ID.png (palette PNGs with VOC's palette; 255 on a 2-pixel border around each
shape, as VOC marks object outlines), ImageSets/Segmentation/{train,val,trainval}.txt. Each image is
a textured background (class 0) with 1 to 3 filled shapes of classes 1..K-1, each class with its own
colour and shape (class 1: rectangles, 2: discs, 3: triangles), so a network can learn them."""
import os

import numpy as np

COLOURS = [(40, 40, 40), (200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60)]


def _draw(mask, image, cls, rng, size):
    from PIL import ImageDraw
    h, w = size
    s = rng.randint(min(h, w) // 5, min(h, w) // 2)
    y, x = rng.randint(0, h - s), rng.randint(0, w - s)
    box = [x, y, x + s, y + s]
    tri = [(x, y + s), (x + s, y + s), (x + s // 2, y)]
    for target, fill, width in ((image, COLOURS[cls], 0), (mask, cls, 0), (mask, 255, 2)):
        d = ImageDraw.Draw(target)
        shape = {1: 'rect', 2: 'disc'}.get(cls, 'tri')
        kw = dict(fill=fill if target is not mask or width == 0 else None, outline=fill if width else None)
        if width:
            kw['width'] = width
        if shape == 'rect':
            d.rectangle(box, **kw)
        elif shape == 'disc':
            d.ellipse(box, **kw)
        else:
            d.polygon(tri, **kw) if not width else d.line(tri + [tri[0]], fill=fill, width=width)


def make_voc_segmentation(root, classes=3, train=16, val=6, size=(48, 64), seed=0):
    """Write the dataset under root/VOC2012; return root (the VOCdevkit folder)."""
    from PIL import Image
    from data.segmentation import voc_colormap
    rng = np.random.RandomState(seed)
    base = os.path.join(root, 'VOC2012')
    for sub in ('JPEGImages', 'SegmentationClass', os.path.join('ImageSets', 'Segmentation')):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    palette = voc_colormap(256).reshape(-1).tolist()
    ids = {'train': [], 'val': []}
    n = 0
    for split, count in (('train', train), ('val', val)):
        for _ in range(count):
            n += 1
            name = '2012_%06d' % n
            noise = rng.randint(0, 60, size=size + (3,)).astype(np.uint8) + np.uint8(20)
            image = Image.fromarray(noise, 'RGB')
            mask = Image.fromarray(np.zeros(size, np.uint8), 'L')
            for _ in range(rng.randint(1, 4)):
                _draw(mask, image, int(rng.randint(1, classes)), rng, size)
            image.save(os.path.join(base, 'JPEGImages', name + '.jpg'), quality=95)
            m = mask.convert('P')
            m.putpalette(palette)
            m.save(os.path.join(base, 'SegmentationClass', name + '.png'))
            ids[split].append(name)
    for split, names in list(ids.items()) + [('trainval', ids['train'] + ids['val'])]:
        with open(os.path.join(base, 'ImageSets', 'Segmentation', split + '.txt'), 'w') as f:
            f.write(''.join(i + '\n' for i in names))
    return root
