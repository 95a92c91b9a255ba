"""A small generated PASCAL VOC dataset in exactly the VOCdevkit layout (for the tests).

    root/VOC<year>/JPEGImages/<id>.jpg
                  /Annotations/<id>.xml         (VOC's XML: <size>, <object><name>, <difficult>, <bndbox>, 1-based)
                  /ImageSets/Main/<split>.txt   (one id per line)

Each image is a noisy grey background with 1 to `max_objects` filled rectangles,
one colour per class, that do not overlap (so every box is fully visible);
sides between size/5 and size/2.
"""
import os

import numpy as np

CLASSES = ['car', 'dog', 'person']
COLOURS = {'car': (220, 40, 40), 'dog': (40, 200, 40), 'person': (40, 60, 230)}


def annotation_xml(img_id, width, height, objects):
    """VOC XML of one image; `objects`: [(class, (x0, y0, x1, y1) 0-based, x1/y1 exclusive)]."""
    objs = ''.join(
        '<object><name>%s</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>'
        '<bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>'
        % (n, x0 + 1, y0 + 1, x1, y1) for n, (x0, y0, x1, y1) in objects)
    return ('<annotation><folder>VOC</folder><filename>%s.jpg</filename><size><width>%d</width>'
            '<height>%d</height><depth>3</depth></size><segmented>0</segmented>%s</annotation>'
            % (img_id, width, height, objs))


def _apart(box, boxes, gap=2):
    return all(box[0] >= b[2] + gap or box[2] + gap <= b[0] or box[1] >= b[3] + gap or box[3] + gap <= b[1]
               for b in boxes)


def make_voc(root, year=2007, splits=(('trainval', 24), ('test', 8)), size=128, classes=CLASSES, seed=0,
             max_objects=3):
    """Write the dataset under root/VOC<year> (ids numbered across the splits in order); return root."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    base = os.path.join(root, 'VOC%d' % year)
    for sub in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    n = 0
    for split, count in splits:
        ids = []
        for _ in range(count):
            img_id = '%06d' % n
            n += 1
            img = (rng.rand(size, size, 3) * 60 + 90).astype(np.uint8)
            objects = []
            for _ in range(rng.randint(1, max_objects + 1)):
                for _try in range(20):
                    bw, bh = rng.randint(size // 5, size // 2, size=2)
                    x0, y0 = rng.randint(0, size - bw), rng.randint(0, size - bh)
                    box = (x0, y0, x0 + bw, y0 + bh)
                    if _apart(box, [b for _, b in objects]):
                        break
                else:
                    continue
                name = classes[rng.randint(len(classes))]
                img[y0:y0 + bh, x0:x0 + bw] = COLOURS.get(name, (200, 200, 0))
                objects.append((name, box))
            Image.fromarray(img).save(os.path.join(base, 'JPEGImages', img_id + '.jpg'), quality=95)
            with open(os.path.join(base, 'Annotations', img_id + '.xml'), 'w') as f:
                f.write(annotation_xml(img_id, size, size, objects))
            ids.append(img_id)
        with open(os.path.join(base, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    return root
