"""Named regroupings: group name -> the dataset's class names, spelled as the dataset spells them.

In a two-group regrouping the *last* group is the positive class (label 1, scikit-learn's
convention), which is how seed 002 counts its TN/FN/FP/TP: Vestuário (clothing) is positive.
"""

from __future__ import annotations

CIFAR10_ANIMALS_VEHICLES = {
    "vehicles": ["airplane", "automobile", "ship", "truck"],
    "animals": ["bird", "cat", "deer", "dog", "frog", "horse"],
}

# Seed 002: Calçado/Malas (class 0) against Vestuário (class 1), torchvision's class names.
FASHION_MNIST_CLOTHING_VS_SHOES_BAGS = {
    "shoes-bags": ["Sandal", "Sneaker", "Bag", "Ankle boot"],
    "clothing": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Shirt"],
}

# The 20 official coarse labels of CIFAR-100 (Krizhevsky 2009), in coarse-label order.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}

DIGITS_EVEN_ODD = {
    "even": ["0", "2", "4", "6", "8"],
    "odd": ["1", "3", "5", "7", "9"],
}

PRESETS: dict[str, dict[str, list[str]]] = {
    "cifar10-animals-vehicles": CIFAR10_ANIMALS_VEHICLES,
    "fashion-mnist-clothing-vs-shoes-bags": FASHION_MNIST_CLOTHING_VS_SHOES_BAGS,
    "cifar100-superclasses": CIFAR100_SUPERCLASSES,
    "digits-even-odd": DIGITS_EVEN_ODD,
}
